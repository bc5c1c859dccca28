"""triplet_embedding: the quick variant run once, and its config guards."""

import json

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One end-to-end quick run, shared by every test below."""
    workdir = tmp_path_factory.mktemp("triplet_embedding") / "run"
    returned = runner.run("triplet_embedding", variant="quick", workdir=workdir)
    return workdir, returned, json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_quick_run_saves_what_it_returns(quick):
    workdir, returned, saved = quick
    assert saved == returned
    assert (workdir / "embedding.png").stat().st_size > 0
    assert "FAIL" not in (workdir / "report.md").read_text()


@pytest.mark.slow
def test_quick_run_embeds_digits_without_collapse(quick):
    _, _, saved = quick
    # Chance is 0.1; even the quick run embeds digits well above it.
    assert saved["knn_accuracy"] > 0.8
    assert saved["embedding_spread"] > 0.2  # the margin: the embedding did not collapse
    assert 0.9 < saved["knn_accuracy_raw_pixels"] < 1.0


@pytest.mark.slow
def test_quick_run_gradients_stay_finite_where_points_coincide(quick):
    workdir, _, saved = quick
    assert saved["nan_gradients"] == 0
    assert saved["naive_norm_nan_gradients"] > 0
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if r["split"] == "eval"]
    assert evals and all(r["nonfinite_grad_entries"] == 0 for r in evals)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("mining", "hardest", "mining must be one of"),
        ("activation", "sigmoid", "activation must be one of"),
    ],
)
def test_bad_choices_are_refused(tmp_path, key, value, match):
    with pytest.raises(ExperimentFailed, match=match):
        runner.run(
            "triplet_embedding",
            variant="quick",
            overrides={key: value},
            workdir=tmp_path / "run",
        )

"""triplet_embedding: quick variant end to end, and its config guards."""

import json

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("triplet_embedding", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    # Chance is 0.1; even the quick run embeds digits well above it.
    assert saved["knn_accuracy"] > 0.8
    assert saved["nan_gradients"] == 0
    assert saved["embedding_spread"] > 0.2  # the margin: the embedding did not collapse
    assert saved["naive_norm_nan_gradients"] > 0
    assert 0.9 < saved["knn_accuracy_raw_pixels"] < 1.0
    assert (tmp_path / "run" / "embedding.png").stat().st_size > 0
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
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

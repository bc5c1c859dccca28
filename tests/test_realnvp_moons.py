"""realnvp_moons: the quick variant end to end (run once) and its config checks."""

import json

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed

FIGURES = ("samples", "density", "latent", "gradient_pathways", "training")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``(results, workdir)`` of one quick run, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("realnvp_moons") / "run"
    return runner.run("realnvp_moons", variant="quick", workdir=workdir), workdir


@pytest.mark.slow
def test_quick_results_are_saved_and_beat_a_gaussian(quick_run):
    results, workdir = quick_run
    saved = json.loads((workdir / "results.json").read_text())
    assert saved == results
    # The best Gaussian scores ~2.0 nats; 100 steps of a tiny flow already do better,
    # and no model beats the generating density (0.32).
    assert 0.25 < saved["generating_density_nll"] < saved["test_nll"] < 1.9
    assert saved["train_step_ms"] > 0
    assert saved["best_step"] in (50, 100)


@pytest.mark.slow
def test_quick_report_has_every_figure_and_no_failure(quick_run):
    _, workdir = quick_run
    report = (workdir / "report.md").read_text()
    # 100 steps cannot reach the paper-scale goal: the quick report shows it as info.
    assert "FAIL" not in report
    assert "| NLL of the generating density (floor) |" in report
    assert "| layer | base | log-det | cosine |" in report
    for name in FIGURES:
        assert (workdir / f"{name}.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_metrics_log_both_pathways_per_layer(quick_run):
    _, workdir = quick_run
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if r["split"] == "eval"]
    assert evals
    for record in evals:
        for name in ("base", "logdet", "cosine"):
            assert {f"{name}_layer0", f"{name}_layer1"} <= record.keys()
        assert -1.0 <= record["cosine_layer1"] <= 1.0


@pytest.mark.parametrize(
    ("key_", "value", "match"),
    [
        ("activation", "sigmoid", "activation must be one of"),
        ("schedule", "linear", "schedule must be one of"),
        ("steps", 5000, "at most 3000 steps"),
        ("warmup_steps", 100, "warmup_steps must be in"),
    ],
)
def test_bad_config_is_refused(tmp_path, key_, value, match):
    with pytest.raises(ExperimentFailed, match=match):
        runner.run(
            "realnvp_moons",
            variant="quick",
            overrides={key_: value},
            workdir=tmp_path / "run",
        )

"""realnvp_digits: the quick variant end to end, run once for every check."""

import json
import math

import pytest

from chainlab import runner


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``(results, workdir)`` of one quick run, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("realnvp_digits") / "run"
    return runner.run("realnvp_digits", variant="quick", workdir=workdir), workdir


@pytest.mark.slow
def test_quick_results_are_saved_and_beat_the_uniform_density(quick_run):
    results, workdir = quick_run
    saved = json.loads((workdir / "results.json").read_text())
    assert saved == results
    assert saved["uniform_bits_per_dim"] == pytest.approx(math.log2(17))
    # 60 steps of a one-scale flow already beat the uniform density on [0, 17)^64.
    for key in (
        "test_bits_per_dim",
        "test_bits_per_dim_early_stopped",
        "test_bits_per_dim_without_averaging",
        "train_bits_per_dim",
    ):
        assert 1.5 < saved[key] < saved["uniform_bits_per_dim"]
    assert saved["best_step"] in (30, 60)
    assert saved["sample_to_train_distance_ratio"] > 0


@pytest.mark.slow
def test_quick_report_and_figures(quick_run):
    _, workdir = quick_run
    for name in ("samples", "training"):
        assert (workdir / f"{name}.png").stat().st_size > 0
    report = (workdir / "report.md").read_text()
    # 60 steps cannot reach the paper-scale goal: the quick report shows it as info.
    assert "FAIL" not in report
    assert "test bits/dim (refit on all training images)" in report


@pytest.mark.slow
def test_quick_metrics_log_both_fits(quick_run):
    _, workdir = quick_run
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [30, 60]
    assert all(r["val_bpd"] > 0 and r["val_bpd_live"] > 0 for r in evals)
    assert {r["run"] for r in records} == {"glow", "glow_refit"}

"""End-to-end test of the attention_temperature experiment (quick variant)."""

import json
import math

import pytest

import chainlab.runner


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    returned = chainlab.runner.run(
        "attention_temperature", variant="quick", workdir=workdir
    )
    results = json.loads((workdir / "results.json").read_text())
    assert results == returned
    assert results["tau_grad_max_rel_error"] < 1e-12
    assert results["tau_grad_max_rel_error_fd"] < 1e-7
    # Too short to settle, but tau must have moved well below its start of 1 and stay
    # above the clip, and the retrieval must beat chance (1 / memory_size) by far.
    assert 0.01 <= results["learned_tau"] < 0.5
    assert results["final_accuracy"] > 0.6
    assert math.isfinite(results["tau_grid_optimum"])
    assert abs(results["dloss_dlog_tau_at_learned_tau"]) < abs(
        results["dloss_dlog_tau_at_init_tau"]
    )
    # Separable: the loss profile over tau has no interior minimum (it is lowest at
    # the grid's lower end, min_tau), while the learned tau's gradient has faded.
    assert results["separable_final_accuracy"] == 1.0
    assert results["separable_tau_grid_optimum"] == pytest.approx(0.01)
    assert abs(results["separable_dloss_dlog_tau_at_learned_tau"]) < 1e-3
    report = (workdir / "report.md").read_text()
    assert "| tau_grad_max_rel_error |" in report
    assert (workdir / "tau_gradient.png").stat().st_size > 0
    assert (workdir / "tau_trajectory.png").stat().st_size > 0
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    runs = {json.loads(line)["run"] for line in lines}
    assert runs == {"noisy", "separable"}

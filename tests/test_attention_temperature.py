"""attention_temperature: the quick run end to end, once, with every figure checked."""

import json
import math

import pytest

import chainlab.runner


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("attention_temperature") / "run"
    returned = chainlab.runner.run(
        "attention_temperature", variant="quick", workdir=workdir
    )
    return workdir, returned


@pytest.mark.slow
def test_closed_form_tau_gradient(quick):
    workdir, results = quick
    assert json.loads((workdir / "results.json").read_text()) == results
    assert results["tau_grad_max_rel_error"] < 1e-12
    assert results["tau_grad_max_rel_error_fd"] < 1e-7


@pytest.mark.slow
def test_learned_temperature(quick):
    _, results = quick
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


@pytest.mark.slow
def test_report_figures_and_metrics(quick):
    workdir, _ = quick
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    assert "issue" not in report and "DESIGN" not in report
    assert "| tau_grad_max_rel_error |" in report
    assert "| learned_tau |" in report and "not judged | dL/dtau = 0" in report
    assert (workdir / "tau_gradient.png").stat().st_size > 0
    assert (workdir / "tau_trajectory.png").stat().st_size > 0
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(line)["run"] for line in lines} == {"noisy", "separable"}

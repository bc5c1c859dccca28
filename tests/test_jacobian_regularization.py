"""jacobian_regularization: quick variant end to end."""

import json

import pytest

from chainlab import runner
from chainlab.compilation import eigen_matmul_options
from chainlab.errors import ExperimentFailed

MODES = ("none", "exact", "projection")
# Exact and projection penalties train the same model up to the estimator's noise:
# after the quick run their mean Jacobian norms agree to a few percent.
PENALTY_AGREEMENT = 0.2


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run(
        "jacobian_regularization", variant="quick", workdir=tmp_path / "run"
    )
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    assert saved["compiler_options"] == eigen_matmul_options()
    for mode in MODES:
        metrics = saved[mode]
        assert 0.8 < metrics["test_accuracy"] <= 1.0
        assert 0.0 < metrics["noise_accuracy"] <= 1.0
        assert metrics["jacobian_frobenius"] > 0
        assert metrics["step_ms"] > 0
        # Zero perturbation leaves the clean accuracy.
        assert saved["noise_sigmas"][0] == saved["attack_epsilons"][0] == 0.0
        for curve in ("gaussian", "fgsm", "pgd"):
            assert metrics[curve][0] == pytest.approx(metrics["test_accuracy"])
    none, exact, proj = (saved[m]["jacobian_frobenius"] for m in MODES)
    assert proj < none / 2 and exact < none / 2
    assert abs(proj - exact) < PENALTY_AGREEMENT * exact
    assert saved["closed_form"]["float64"]["max_relative_error"] < 1e-10
    assert saved["closed_form"]["float32"]["max_relative_error"] < 1e-4
    study = saved["estimator_variance"]
    for method in ("projection", "forward_projection"):
        assert study[method]["max_z"] < 4.5
        # Variance falls with num_projections.
        assert (
            study[method]["relative_variance"][-1]
            < study[method]["relative_variance"][0]
        )
    report = (tmp_path / "run" / "report.md").read_text()
    # Numerical checks pass; training goals are info at 200 steps.
    assert "FAIL" not in report
    assert "| pass |" in report and "| info |" in report
    assert "closed-form dR/d(W1, b1, W2) vs autodiff, float64 | " in report
    for figure in ("robustness.png", "estimator_variance.png"):
        assert (tmp_path / "run" / figure).stat().st_size > 0
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") > 0


@pytest.mark.slow
def test_quick_variant_with_a_cnn(tmp_path):
    results = runner.run(
        "jacobian_regularization",
        variant="quick",
        overrides={
            "architecture": "cnn",
            "variance_projections": (1,),
            "eigen_matmuls": False,
        },
        workdir=tmp_path / "run",
    )
    assert results["compiler_options"] == {}
    for mode in MODES:
        assert 0.5 < results[mode]["test_accuracy"] <= 1.0
    none, exact, proj = (results[m]["jacobian_frobenius"] for m in MODES)
    assert proj < none and exact < none
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    assert "tanh CNN (3x3 convolutions of 16, 32 channels" in report
    assert "XLA compile options of the training steps: none (defaults)" in report
    assert "The step-time goal is set for the MLP" in report


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ExperimentFailed, match="architecture must be 'mlp' or 'cnn'"):
        runner.run(
            "jacobian_regularization",
            variant="quick",
            overrides={"architecture": "resnet"},
            workdir=tmp_path / "run",
        )

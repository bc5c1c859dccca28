"""jacobian_regularization: the quick variant end to end, run once for every check."""

import json

import pytest

from chainlab import runner
from chainlab.compilation import eigen_matmul_options

MODES = ("none", "exact", "projection")
# Exact and projection penalties train the same model up to the estimator's noise:
# after the quick run their mean Jacobian norms agree to a few percent.
PENALTY_AGREEMENT = 0.2


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick variant's results, results.json and report.md, from one run."""
    path = tmp_path_factory.mktemp("jacobian_regularization") / "run"
    results = runner.run("jacobian_regularization", variant="quick", workdir=path)
    saved = json.loads((path / "results.json").read_text())
    return results, saved, (path / "report.md").read_text(), path


@pytest.mark.slow
def test_quick_results_are_saved_and_sane(quick):
    results, saved, _, path = quick
    assert saved == results
    assert saved["compiler_options"] == eigen_matmul_options()
    assert saved["noise_sigmas"][0] == saved["attack_epsilons"][0] == 0.0
    for mode in MODES:
        metrics = saved[mode]
        assert 0.8 < metrics["test_accuracy"] <= 1.0
        assert 0.0 < metrics["noise_accuracy"] <= 1.0
        assert metrics["jacobian_frobenius"] > 0
        assert metrics["step_ms"] > 0
        # Zero perturbation leaves the clean accuracy; attacks only lower it.
        for curve in ("gaussian", "fgsm", "pgd"):
            assert metrics[curve][0] == pytest.approx(metrics["test_accuracy"])
        assert metrics["pgd"][-1] <= metrics["fgsm"][-1] + 0.02
        assert metrics["fgsm"][-1] < metrics["test_accuracy"]
    assert (path / "metrics.jsonl").read_text().count("\n") > 0
    for figure in ("robustness.png", "estimator_variance.png"):
        assert (path / figure).stat().st_size > 0


@pytest.mark.slow
def test_quick_penalties_shrink_the_jacobian_alike(quick):
    _, saved, _, _ = quick
    none, exact, proj = (saved[m]["jacobian_frobenius"] for m in MODES)
    assert proj < none / 2 and exact < none / 2
    assert abs(proj - exact) < PENALTY_AGREEMENT * exact
    # The penalised models are more robust to the L-inf attacks.
    assert saved["projection"]["pgd"][-1] > saved["none"]["pgd"][-1]


@pytest.mark.slow
def test_quick_closed_form_and_estimators(quick):
    _, saved, _, _ = quick
    assert saved["closed_form"]["float64"]["max_relative_error"] < 1e-10
    assert saved["closed_form"]["float32"]["max_relative_error"] < 1e-4
    study = saved["estimator_variance"]
    for method in ("projection", "forward_projection"):
        assert study[method]["max_z"] < 4.5
        # Variance falls with num_projections.
        relative = study[method]["relative_variance"]
        assert relative[-1] < relative[0]


@pytest.mark.slow
def test_quick_report_passes_numerics_and_reports_training_goals(quick):
    _, _, report, _ = quick
    assert "FAIL" not in report
    assert "| pass |" in report and "| info |" in report
    assert "closed-form dR/d(W1, b1, W2) vs autodiff, float64 | " in report
    assert ">= 10 at paper scale" in report
    assert "issue" not in report.lower()


@pytest.mark.slow
def test_quick_variant_with_a_cnn(tmp_path):
    """The CNN path, shortened: its plumbing and a penalty that shrinks J. Narrow
    convolutions, 60 steps (test accuracy near 0.8) and one timed call per round: the
    exact penalty's step (ten VJPs through the convolutions) dominates the run time,
    and no check here reads it; the estimator study on one example only."""
    results = runner.run(
        "jacobian_regularization",
        variant="quick",
        overrides={
            "architecture": "cnn",
            "conv_features": (4, 8),
            "steps": 60,
            "timing_repeats": 1,
            "variance_projections": (1,),
            "variance_keys": 30,
            "variance_examples": 1,
            "noise_sigmas": (0.0,),
            "attack_epsilons": (0.0,),
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
    assert "tanh CNN (3x3 convolutions of 4, 8 channels" in report
    assert "XLA compile options of the training steps: none (defaults)" in report
    assert "goal set for the MLP only" in report

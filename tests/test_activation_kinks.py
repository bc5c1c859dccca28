"""activation_kinks: the quick run end to end, once, with every figure checked on it."""

import json

import pytest

import chainlab.runner

ALPHA = 0.5  # configs/activation_kinks.py: elu_alpha
SLOPE = 0.1  # configs/activation_kinks.py: leaky_slope
# Float64 central differences on the fan-out network: ~1e-10 expected (see experiment).
FANOUT_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("activation_kinks") / "run"
    returned = chainlab.runner.run("activation_kinks", variant="quick", workdir=workdir)
    return workdir, returned


@pytest.mark.slow
def test_each_convention_at_the_kink(quick):
    workdir, results = quick
    assert json.loads((workdir / "results.json").read_text()) == results
    assert results["elu_grad_at_zero_right"] == 1.0
    assert results["elu_grad_at_zero_left"] == ALPHA
    assert results["relu_grad_at_zero"] == 0.0
    assert results["leaky_relu_grad_at_zero"] == SLOPE
    assert results["maxout_grad_at_tie"] == -1.0
    assert results["elu_second_derivative_at_zero_left"] == ALPHA
    # JAX's own conventions, for comparison: jnp.maximum and jnp.max split ties.
    assert results["jnp_maximum_grad_at_zero"] == 0.5
    assert results["jax_nn_elu_grad_at_zero"] == ALPHA
    assert results["jnp_max_grad_at_tie"] == pytest.approx((-1.0 + 0.5) / 2)


@pytest.mark.slow
def test_fan_out_sums_and_modes(quick):
    _, results = quick
    assert 0 <= results["fanout_max_abs_error"] < FANOUT_TOLERANCE
    # The branches' terms (chainlab.paths) sum to jax.grad up to float64 round-off.
    assert results["fanout_autodiff_vs_branch_sum"] <= 1e-12
    assert results["fanout_last_branch_only_error"] > 0.1  # the sum matters
    assert results["custom_jvp_all_modes_ok"] is True
    assert results["custom_vjp_forward_mode_fails"] is True
    assert "forward-mode" in results["custom_vjp_forward_mode_error"]
    assert results["custom_vjp_modes_ok"]["grad"] is True
    assert results["rules_vs_plain_autodiff_max_abs"] <= 1e-12


@pytest.mark.slow
def test_report_and_figure(quick):
    workdir, _ = quick
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    assert "| `relu via custom_vjp` | 0 | fails |" in report
    assert "| `relu` | 0 | 1 | 0.5 | 0 | 0 | 0 |" in report
    assert "issue" not in report and "DESIGN" not in report
    assert (workdir / "activations.png").stat().st_size > 0

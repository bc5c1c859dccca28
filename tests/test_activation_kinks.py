"""End-to-end run of the activation_kinks experiment (quick variant)."""

import json

import pytest

import chainlab.runner

ALPHA = 0.5  # configs/activation_kinks.py: elu_alpha
SLOPE = 0.1  # configs/activation_kinks.py: leaky_slope
# Float64 central differences on the fan-out network: ~1e-10 expected (see experiment).
FANOUT_TOLERANCE = 1e-6


@pytest.mark.slow
def test_activation_kinks_quick(tmp_path):
    returned = chainlab.runner.run(
        "activation_kinks", variant="quick", workdir=tmp_path / "run"
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == returned
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
    assert 0 <= results["fanout_max_abs_error"] < FANOUT_TOLERANCE
    assert results["fanout_last_branch_only_error"] > 0.1  # the sum matters
    assert results["custom_jvp_all_modes_ok"] is True
    assert results["custom_vjp_forward_mode_fails"] is True
    assert "forward-mode" in results["custom_vjp_forward_mode_error"]
    assert results["custom_vjp_modes_ok"]["grad"] is True
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    assert "| `relu via custom_vjp` | 0 | fails |" in report
    assert (tmp_path / "run" / "activations.png").stat().st_size > 0

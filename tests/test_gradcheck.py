"""Finite differences and rule comparisons of chainlab.gradcheck."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab.activations import elu, relu
from chainlab.gradcheck import (
    MODES,
    compare_rules,
    derivatives_by_mode,
    max_abs_error,
    max_rel_error,
    numerical_grad,
    numerical_jacobian,
)

# Central differences in float64 with the default step (eps^(1/3) ~ 6e-6): truncation
# and round-off both ~1e-11 times the third derivative / function scale; 1e-8 is safe.
CENTRAL_FLOAT64_TOL = 1e-8
# One-sided differences in float64 (step eps^(1/2) ~ 1.5e-8): error ~ h * f'' ~ 1e-7.
ONE_SIDED_FLOAT64_TOL = 1e-6
# Central differences in float32 (step ~ 5e-3): error ~ 1e-4 relative for O(1) inputs.
CENTRAL_FLOAT32_TOL = 1e-3


def _pytree_function(params):
    # A smooth function of a pytree input with a (2, 3) output.
    w, b = params["w"], params["b"]
    return jnp.tanh(w @ jnp.sin(b))[:, None] * jnp.cos(b)[None, :]


def _params(key, dtype):
    kw, kb = jax.random.split(key)
    return {
        "w": jax.random.normal(kw, (2, 3), dtype),
        "b": jax.random.normal(kb, (3,), dtype),
    }


def test_jacobian_of_pytree_matches_jacfwd_float64(key, x64):
    params = _params(key, jnp.float64)

    @jax.jit  # every method in one program, not one per primitive
    def jacobians(params):
        numerical = {
            method: numerical_jacobian(_pytree_function, params, method=method)
            for method in ("central", "forward", "backward")
        }
        return numerical, jax.jacfwd(_pytree_function)(params)

    numerical, exact = jacobians(params)
    assert jax.tree.structure(numerical["central"]) == jax.tree.structure(exact)
    assert numerical["central"]["w"].shape == (2, 3, 2, 3)
    assert float(max_abs_error(numerical["central"], exact)) < CENTRAL_FLOAT64_TOL
    for method in ("forward", "backward"):
        one_sided = numerical[method]
        assert float(max_abs_error(one_sided, exact)) < ONE_SIDED_FLOAT64_TOL


def test_jacobian_float32_default_step(key):
    params = _params(key, jnp.float32)
    numerical = numerical_jacobian(_pytree_function, params)
    assert numerical["b"].dtype == jnp.float32
    exact = jax.jacfwd(_pytree_function)(params)
    assert float(max_rel_error(numerical, exact)) < CENTRAL_FLOAT32_TOL


def test_one_sided_differences_see_each_side_of_a_kink(x64):
    zero = jnp.array(0.0)
    for f, right, left in [
        (jnp.abs, 1.0, -1.0),
        (relu, 1.0, 0.0),
        (lambda x: elu(x, 0.5), 1.0, 0.5),
    ]:
        fwd = numerical_grad(f, zero, method="forward")
        bwd = numerical_grad(f, zero, method="backward")
        central = numerical_grad(f, zero)
        assert float(fwd) == pytest.approx(right, abs=ONE_SIDED_FLOAT64_TOL)
        assert float(bwd) == pytest.approx(left, abs=ONE_SIDED_FLOAT64_TOL)
        # Central differences straddle the kink: the mean of the two slopes, up to
        # the same O(h f'') error as a one-sided difference.
        assert float(central) == pytest.approx(
            (left + right) / 2, abs=ONE_SIDED_FLOAT64_TOL
        )


def test_numerical_grad_matches_grad_and_refuses_vector_output(key, x64):
    params = _params(key, jnp.float64)
    scalar = lambda p: jnp.sum(_pytree_function(p) ** 2)  # noqa: E731
    assert (
        float(max_abs_error(numerical_grad(scalar, params), jax.grad(scalar)(params)))
        < CENTRAL_FLOAT64_TOL
    )
    with pytest.raises(ValueError, match=r"f must return a scalar, got shape \(2, 3\)"):
        numerical_grad(_pytree_function, params)


def test_error_measures():
    a = {"w": jnp.array([1.0, -3.0]), "b": jnp.array(2.0)}
    b = {"w": jnp.array([1.5, -4.0]), "b": jnp.array(2.0)}
    assert float(max_abs_error(a, b)) == 1.0
    assert float(max_rel_error(a, b)) == 0.25  # 1.0 / max |b| = 1 / 4
    assert float(max_rel_error(jnp.zeros(3), jnp.zeros(3))) == 0.0
    assert np.isnan(float(max_abs_error(jnp.array([jnp.nan]), jnp.array([0.0]))))
    assert float(jax.jit(max_abs_error)(a, b)) == 1.0


def test_compare_rules_accepts_a_correct_rule_and_catches_a_wrong_one(key):
    x = jnp.array([-1.5, -0.2, 0.3, 2.0])
    good = compare_rules(relu, jax.nn.relu, x, key=key)
    assert (float(good.primal), float(good.jvp), float(good.vjp)) == (0.0, 0.0, 0.0)

    @jax.custom_jvp
    def wrong_relu(x):
        return jax.nn.relu(x)

    @wrong_relu.defjvp
    def _wrong_relu_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return wrong_relu(x), 2.0 * jnp.where(x > 0, t, 0.0)  # off by a factor 2

    bad = compare_rules(wrong_relu, jax.nn.relu, x, key=key)
    assert float(bad.primal) == 0.0
    assert float(bad.jvp) > 0.1 and float(bad.vjp) > 0.1


def test_compare_rules_with_several_pytree_arguments(key, x64):
    params = _params(key, jnp.float64)
    scale = jnp.array(1.5)
    f = lambda p, s: s * _pytree_function(p)  # noqa: E731
    same = compare_rules(f, jax.jit(f), params, scale, key=key)
    assert float(max(same)) < 1e-12


def test_compare_rules_reports_forward_mode_failure_of_custom_vjp(key):
    @jax.custom_vjp
    def reverse_only(x):
        return jnp.sin(x)

    reverse_only.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (jnp.cos(x) * g,))
    with pytest.raises(TypeError, match="forward-mode"):
        compare_rules(reverse_only, jnp.sin, jnp.ones(2), key=key)


def test_derivatives_by_mode_agree_for_a_custom_jvp_rule():
    # ELU with alpha = 0.5, left convention at 0: f'(0) = alpha and f''(0) = alpha.
    outcomes = derivatives_by_mode(lambda x: elu(x, 0.5, side="left"), 0.0)
    assert tuple(outcomes) == MODES
    assert all(outcome.error is None for outcome in outcomes.values())
    first = ("grad", "jvp", "jacfwd", "jacrev")
    assert [float(outcomes[m].value) for m in first] == [0.5] * 4
    second = ("hessian", "jacfwd(grad)", "jacrev(grad)")
    assert [float(outcomes[m].value) for m in second] == [0.5] * 3


def test_derivatives_by_mode_records_the_modes_a_custom_vjp_lacks():
    @jax.custom_vjp
    def reverse_only(x):
        return jnp.sin(x)

    reverse_only.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (jnp.cos(x) * g,))
    outcomes = derivatives_by_mode(lambda x: jnp.sum(reverse_only(x)), jnp.zeros(2))
    failing = {mode for mode, outcome in outcomes.items() if outcome.error}
    # Forward over reverse differentiates the backward rule, ordinary JAX code.
    assert failing == {"jvp", "jacfwd"}
    assert outcomes["jvp"].value is None
    assert outcomes["jvp"].error.startswith("TypeError: ")
    assert "forward-mode" in outcomes["jvp"].error and "\n" not in outcomes["jvp"].error
    np.testing.assert_array_equal(outcomes["grad"].value, jnp.ones(2))
    np.testing.assert_array_equal(outcomes["hessian"].value, jnp.zeros((2, 2)))

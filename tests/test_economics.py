"""Tests for chainlab.science.economics: implicit differentiation and IS-LM."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.science.economics import (
    ISLM_PARAMETERS,
    ISLM_VARIABLES,
    aggregate_demand,
    comparative_statics,
    equilibrium_shift,
    islm_curve,
    islm_residual,
    linear_islm,
    linear_islm_closed_form,
    semilog_ad_slope,
    semilog_islm,
    solve_equilibrium,
)

# Exact arithmetic in float64 leaves only rounding: a few hundred ulps of 1e3-sized
# numbers.
EXACT_RTOL = 1e-10
# float32 Newton solve of a 1e3-sized system: a few ulps of float32.
FLOAT32_RTOL = 1e-5
# Central differences with step 1e-5 in float64: truncation O(h^2) ~ 1e-10 relative,
# rounding ~ eps / h ~ 1e-11; 1e-7 leaves a wide margin.
FD_RTOL = 1e-7
FD_STEP = 1e-5

# Mankiw, Macroeconomics, ch. 11, problem 3: C = 200 + 0.75 (Y - T), I = 200 - 25 r,
# G = T = 100, M = 1000, P = 2, (M/P)^d = Y - 100 r. Equilibrium Y = 1100, r = 6 and
# aggregate demand Y = 850 + 500 / P.
MANKIW = dict(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
MANKIW_THETA = (100.0, 100.0, 1000.0, 2.0)
SEMILOG = dict(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, eta=0.1)


def mankiw_system():
    return partial(islm_residual, linear_islm(**MANKIW))


def semilog_system():
    return partial(islm_residual, semilog_islm(**SEMILOG))


def linear_closed_form(G, T, M, P, **model):
    """Equilibrium and dx/dtheta of the linear model by Cramer's rule (library)."""
    x, dx = linear_islm_closed_form(**model, G=G, T=T, M=M, P=P)
    return np.asarray(x), np.asarray(dx)


def test_names_match_shapes():
    assert ISLM_VARIABLES == ("Y", "r")
    assert ISLM_PARAMETERS == ("G", "T", "M", "P")


@pytest.mark.parametrize(
    "theta, expected",
    [
        ((100.0, 100.0, 1000.0, 2.0), (1100.0, 6.0)),  # Mankiw 3(a)
        ((150.0, 100.0, 1000.0, 2.0), (1200.0, 7.0)),  # 3(b): G up by 50
        ((100.0, 100.0, 1200.0, 2.0), (1150.0, 5.5)),  # 3(c): M up by 200
        ((100.0, 100.0, 1000.0, 4.0), (975.0, 7.25)),  # 3(d): P up to 4
    ],
)
def test_mankiw_equilibria(x64, theta, expected):
    x = solve_equilibrium(mankiw_system(), jnp.zeros(2), jnp.array(theta))
    np.testing.assert_allclose(x, expected, rtol=EXACT_RTOL)
    assert x.dtype == jnp.float64


def test_float32_equilibrium():
    x = solve_equilibrium(mankiw_system(), jnp.zeros(2), jnp.array(MANKIW_THETA))
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(x, (1100.0, 6.0), rtol=FLOAT32_RTOL)


def test_comparative_statics_matches_closed_form(x64):
    theta = np.array([120.0, 80.0, 900.0, 1.5])
    x_star, expected = linear_closed_form(*theta, **MANKIW)
    F = mankiw_system()
    np.testing.assert_allclose(F(x_star, theta), 0.0, atol=1e-9)
    dx = comparative_statics(F, x_star, theta)
    assert dx.shape == (2, 4)
    np.testing.assert_allclose(dx, expected, rtol=EXACT_RTOL)


def test_mankiw_slopes(x64):
    dx = comparative_statics(
        mankiw_system(), jnp.array([1100.0, 6.0]), jnp.array(MANKIW_THETA)
    )
    # Y = 850 + 500 / P: dY/dP = -125 at P = 2; government multiplier h / D = 2.
    np.testing.assert_allclose(dx[0], [2.0, -1.5, 0.25, -125.0], rtol=EXACT_RTOL)


@pytest.mark.parametrize("system", [mankiw_system, semilog_system])
def test_implicit_gradient_matches_finite_differences(x64, system):
    F = system()
    theta = jnp.array(MANKIW_THETA)
    x0 = jnp.array([1000.0, 5.0])
    solve = jax.jit(lambda theta: solve_equilibrium(F, x0, theta))
    jac_rev = jax.jit(jax.jacrev(solve))(theta)
    jac_fwd = jax.jit(jax.jacfwd(solve))(theta)
    steps = FD_STEP * jnp.maximum(1.0, jnp.abs(theta))
    shifts = jnp.diag(steps)
    plus = jax.vmap(solve)(theta[None, :] + shifts)  # row j: theta_j shifted up
    minus = jax.vmap(solve)(theta[None, :] - shifts)
    finite_difference = (plus - minus).T / (2 * steps[None, :])
    np.testing.assert_allclose(jac_rev, finite_difference, rtol=FD_RTOL, atol=1e-9)
    np.testing.assert_allclose(jac_fwd, jac_rev, rtol=EXACT_RTOL)
    ift = comparative_statics(F, solve(theta), theta)
    np.testing.assert_allclose(jac_rev, ift, rtol=EXACT_RTOL)


def test_check_grads_through_solver(x64):
    F = semilog_system()
    solve = jax.jit(lambda theta: solve_equilibrium(F, jnp.array([1000.0, 5.0]), theta))
    check_grads(solve, (jnp.array(MANKIW_THETA),), order=1, modes=("fwd", "rev"))


def test_semilog_slope_closed_form(x64):
    """dY/dP = -b Y / (P (b + (1 - c) eta Y)) along the semi-log equilibrium."""
    model = semilog_islm(**SEMILOG)
    theta = dict(G=100.0, T=100.0, M=1000.0)
    P = 2.0
    ad = lambda P: aggregate_demand(model, P, **theta, x0=[1000.0, 5.0])  # noqa: E731
    Y = ad(P)
    b, c, eta = SEMILOG["b"], SEMILOG["c"], SEMILOG["eta"]
    expected = semilog_ad_slope(Y, P, c=c, b=b, eta=eta)
    np.testing.assert_allclose(expected, -b * Y / (P * (b + (1 - c) * eta * Y)))
    np.testing.assert_allclose(jax.grad(ad)(P), expected, rtol=EXACT_RTOL)
    # Y is on both curves: 1700 - 100 r = Y and Y exp(-0.1 r) = 500.
    r = (1700.0 - Y) / 100.0
    np.testing.assert_allclose(Y * jnp.exp(-0.1 * r), 500.0, rtol=EXACT_RTOL)


def test_aggregate_demand_curve(x64):
    model = linear_islm(**MANKIW)
    P = jnp.array([[1.0, 2.0], [4.0, 5.0]])
    Y = aggregate_demand(model, P, G=100.0, T=100.0, M=1000.0, x0=[0.0, 0.0])
    assert Y.shape == P.shape
    np.testing.assert_allclose(Y, 850.0 + 500.0 / P, rtol=EXACT_RTOL)
    slope = jax.jit(
        jax.vmap(
            jax.grad(
                lambda p: aggregate_demand(
                    model, p, G=100.0, T=100.0, M=1000.0, x0=[0, 0]
                )
            )
        )
    )(P.reshape(-1))
    np.testing.assert_allclose(slope, -500.0 / P.reshape(-1) ** 2, rtol=EXACT_RTOL)


def test_jit_matches_eager(x64):
    F = semilog_system()
    theta = jnp.array(MANKIW_THETA)
    solve = lambda theta: solve_equilibrium(F, jnp.array([1000.0, 5.0]), theta)  # noqa: E731
    np.testing.assert_allclose(jax.jit(solve)(theta), solve(theta), rtol=EXACT_RTOL)
    statics = lambda theta: comparative_statics(F, solve(theta), theta)  # noqa: E731
    np.testing.assert_allclose(jax.jit(statics)(theta), statics(theta), rtol=EXACT_RTOL)


def degenerate(x, theta):
    """Two copies of one equation: a line of equilibria, dF/dx singular."""
    equation = x[0] + x[1] - theta[0]
    return jnp.stack([equation, 2.0 * equation])


def test_singular_jacobian_raises_eagerly():
    with pytest.raises(ValueError, match="singular"):
        comparative_statics(degenerate, jnp.array([1.0, 1.0]), jnp.array([2.0]))


def test_singular_jacobian_is_nan_under_jit():
    statics = jax.jit(partial(comparative_statics, degenerate))
    result = statics(jnp.array([1.0, 1.0]), jnp.array([2.0]))
    assert result.shape == (2, 1)
    assert jnp.all(jnp.isnan(result))


def no_real_root(x, theta):
    return x**2 + theta


def test_non_convergence_raises_eagerly():
    with pytest.raises(ValueError, match="did not converge in 20 steps"):
        solve_equilibrium(
            no_real_root, jnp.array([0.5]), jnp.array([1.0]), max_steps=20
        )


def test_non_convergence_is_nan_under_jit():
    solve = jax.jit(partial(solve_equilibrium, no_real_root, max_steps=20))
    assert jnp.all(jnp.isnan(solve(jnp.array([0.5]), jnp.array([1.0]))))
    root = solve(jnp.array([0.5]), jnp.array([-4.0]))
    np.testing.assert_allclose(root, [2.0], rtol=FLOAT32_RTOL)


def test_closed_form_multipliers_and_broadcasting(x64):
    """Mankiw's multipliers by hand: dY/dG = h / D = 2, dY/dM = b / (P D) = 1/4; a
    batch of price levels gives a batch of equilibria."""
    x, dx = linear_closed_form(*MANKIW_THETA, **MANKIW)
    np.testing.assert_allclose(x, [1100.0, 6.0], rtol=EXACT_RTOL)
    np.testing.assert_allclose(dx[0], [2.0, -1.5, 0.25, -125.0], rtol=EXACT_RTOL)
    P = np.array([1.0, 2.0, 4.0])
    xs, dxs = linear_islm_closed_form(**MANKIW, G=100.0, T=100.0, M=1000.0, P=P)
    assert xs.shape == (3, 2) and dxs.shape == (3, 2, 4)
    np.testing.assert_allclose(xs[:, 0], 850.0 + 500.0 / P, rtol=EXACT_RTOL)


def test_is_and_lm_curves_cross_at_the_equilibrium(x64):
    model = linear_islm(**MANKIW)
    theta = jnp.array(MANKIW_THETA)
    r = jnp.array([4.0, 6.0, 8.0])
    IS = islm_curve(model, r, theta, market="IS", Y0=1000.0)
    LM = islm_curve(model, r, theta, market="LM", Y0=1000.0)
    np.testing.assert_allclose(IS, 1700.0 - 100.0 * r, rtol=EXACT_RTOL)
    np.testing.assert_allclose(LM, 500.0 + 100.0 * r, rtol=EXACT_RTOL)
    np.testing.assert_allclose(IS[1], LM[1], rtol=EXACT_RTOL)  # at r = 6


def test_equilibrium_shift_exact_when_linear_second_order_otherwise(x64):
    theta = jnp.asarray(MANKIW_THETA)
    linear = partial(islm_residual, linear_islm(**MANKIW))
    x = solve_equilibrium(linear, jnp.zeros(2), theta)
    shift = equilibrium_shift(linear, x, theta, index=2, delta=100.0)  # M + 100
    np.testing.assert_allclose(shift.x, shift.predicted, rtol=EXACT_RTOL)
    np.testing.assert_allclose(shift.x[0], 1100.0 + 0.25 * 100.0, rtol=EXACT_RTOL)
    semilog = partial(islm_residual, semilog_islm(**SEMILOG))
    x = solve_equilibrium(semilog, x, theta)
    gaps = [
        np.abs(np.subtract(*equilibrium_shift(semilog, x, theta, index=0, delta=d)))
        for d in (20.0, 10.0)
    ]
    # Halving delta divides the first-order prediction's miss by 4.
    np.testing.assert_allclose(gaps[0] / gaps[1], 4.0, rtol=0.05)

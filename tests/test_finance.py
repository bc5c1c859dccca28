"""Tests for chainlab.science.finance: Black-Scholes, greeks, heat equation."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtr
from jax.test_util import check_grads

from chainlab.science.finance import (
    GREEKS,
    KINDS,
    black_scholes,
    greeks,
    greeks_closed_form,
    greeks_finite_differences,
    heat_residual,
    heat_transform,
    pde_residual,
    price_via_heat_equation,
    solve_heat_equation,
)

# Autodiff against closed forms in float64: both exact up to rounding.
EXACT_RTOL = 1e-11
# Central differences, step 1e-5 relative, float64: truncation ~1e-10, rounding
# ~eps / h ~ 1e-11 (times 1e5 for the second difference of gamma).
FD_STEP = 1e-5
FD_RTOL = 1e-5
FD_ATOL = 1e-8
# Gamma's second difference of prices up to ~60 rounds to ~4 eps 60 / h^2 ~ 1e-7 at
# h = 6e-4: looser tolerances for it.
GAMMA_FD_RTOL = 1e-4
GAMMA_FD_ATOL = 1e-6
# Residuals of PDEs from second derivatives of O(100) prices in float64.
RESIDUAL_ATOL = 1e-9

# Step of jax.test_util.check_grads: its default 1e-4 is 0.3% of a 3% rate, too coarse
# for second derivatives; 1e-6 keeps truncation ~1e-12 and rounding ~1e-10.
CHECK_GRADS_EPS = 1e-6

# A grid of spots, strikes, expiries, rates and volatilities (broadcast to (5,)); NumPy
# float64, so that each test runs in the precision it enables.
SPOTS = np.array([60.0, 90.0, 100.0, 115.0, 150.0])
STRIKE, EXPIRY, RATE, VOL = 100.0, np.array([0.1, 0.5, 1.0, 2.0, 3.0]), 0.05, 0.3


@pytest.mark.parametrize(
    "args, kind, published, decimals",
    [
        # The textbook case: call 10.4506, put 5.5735.
        ((100.0, 100.0, 1.0, 0.05, 0.2), "call", 10.4506, 4),
        ((100.0, 100.0, 1.0, 0.05, 0.2), "put", 5.5735, 4),
        # Hull, Options, Futures, and Other Derivatives, Example 15.6.
        ((42.0, 40.0, 0.5, 0.1, 0.2), "call", 4.76, 2),
        ((42.0, 40.0, 0.5, 0.1, 0.2), "put", 0.81, 2),
        # Hull, ch. 19 (the greeks example): call worth about 2.40.
        ((49.0, 50.0, 20 / 52, 0.05, 0.2), "call", 2.40, 2),
    ],
)
def test_published_prices(x64, args, kind, published, decimals):
    price = black_scholes(*args, kind=kind)
    assert round(float(price), decimals) == published


def test_float32_textbook_price():
    price = black_scholes(100.0, 100.0, 1.0, 0.05, 0.2)
    assert price.dtype == jnp.float32
    assert round(float(price), 4) == 10.4506


def test_hull_greeks(x64):
    """Hull, ch. 19: delta 0.522, gamma 0.066, vega 12.1, theta -4.31, rho 8.91."""
    g = greeks(49.0, 50.0, 20 / 52, 0.05, 0.2)
    published = dict(
        delta=(0.522, 3),
        gamma=(0.066, 3),
        vega=(12.1, 1),
        theta=(-4.31, 2),
        rho=(8.91, 2),
    )
    for name, (value, decimals) in published.items():
        assert round(float(g[name]), decimals) == value, name


@pytest.mark.parametrize("kind", KINDS)
def test_greeks_match_closed_form(x64, kind):
    auto = greeks(SPOTS, STRIKE, EXPIRY, RATE, VOL, kind=kind)
    closed = greeks_closed_form(SPOTS, STRIKE, EXPIRY, RATE, VOL, kind=kind)
    assert (
        tuple(auto)
        == tuple(closed)
        == GREEKS
        == ("delta", "gamma", "vega", "theta", "rho")
    )
    for name in auto:
        assert auto[name].shape == (5,)
        np.testing.assert_allclose(
            auto[name], closed[name], rtol=EXACT_RTOL, err_msg=name
        )


@pytest.mark.parametrize("kind", KINDS)
def test_greeks_match_finite_differences(x64, kind):
    auto = greeks(SPOTS, STRIKE, EXPIRY, RATE, VOL, kind=kind)
    finite = greeks_finite_differences(
        SPOTS, STRIKE, EXPIRY, RATE, VOL, kind=kind, step=FD_STEP
    )
    assert list(finite) == list(GREEKS)
    for name, value in finite.items():
        gamma = name == "gamma"
        np.testing.assert_allclose(
            auto[name],
            value,
            rtol=GAMMA_FD_RTOL if gamma else FD_RTOL,
            atol=GAMMA_FD_ATOL if gamma else FD_ATOL,
            err_msg=name,
        )


def test_check_grads(x64):
    # Call and put in one jitted function: one set of compiled programs for both.
    def prices(*args):
        return jnp.stack([black_scholes(*args, kind=kind) for kind in KINDS])

    check_grads(
        jax.jit(prices),
        (105.0, 95.0, 0.7, 0.03, 0.25),
        order=2,
        modes=("fwd", "rev"),
        eps=CHECK_GRADS_EPS,
    )


def test_put_call_parity(x64):
    call = black_scholes(SPOTS, STRIKE, EXPIRY, RATE, VOL)
    put = black_scholes(SPOTS, STRIKE, EXPIRY, RATE, VOL, kind="put")
    forward = SPOTS - STRIKE * jnp.exp(-RATE * EXPIRY)
    np.testing.assert_allclose(call - put, forward, rtol=EXACT_RTOL)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_volatility_and_expiry_limits(x64, kind):
    """sigma^2 T = 0: the discounted intrinsic value, with finite gradients."""
    sign = 1.0 if kind == "call" else -1.0
    for T, sigma in ((0.0, 0.2), (1.0, 0.0)):
        price = black_scholes(SPOTS, STRIKE, T, RATE, sigma, kind=kind)
        intrinsic = jnp.maximum(sign * (SPOTS - STRIKE * jnp.exp(-RATE * T)), 0.0)
        np.testing.assert_allclose(price, intrinsic, rtol=EXACT_RTOL)
        g = greeks(SPOTS, STRIKE, T, RATE, sigma, kind=kind)
        for name, value in g.items():
            assert jnp.all(jnp.isfinite(value)), (name, T, sigma)
        # At the kink S = K e^{-rT} the delta is the average of its one-sided values,
        # which is also its limit as sigma^2 T -> 0 (N(0) = 1/2).
        kink = SPOTS == STRIKE * np.exp(-RATE * T)
        expected = sign * np.where(kink, 0.5, intrinsic > 0)
        np.testing.assert_allclose(g["delta"], expected, atol=0)


def test_broadcasting_and_jit():
    S = jnp.linspace(80.0, 120.0, 3)[:, None]
    K = jnp.array([90.0, 100.0, 110.0, 120.0])[None, :]
    price = jax.jit(black_scholes, static_argnames="kind")(S, K, 1.0, 0.05, 0.2)
    assert price.shape == (3, 4)
    g = jax.jit(greeks)(S, K, 1.0, 0.05, 0.2)
    assert all(v.shape == (3, 4) for v in g.values())


def test_pde_residual(x64):
    S = jnp.linspace(50.0, 150.0, 7)
    for kind in KINDS:

        def V(S, t, kind=kind):
            return black_scholes(S, 100.0, 2.0 - t, 0.05, 0.3, kind=kind)

        residual = jax.jit(partial(pde_residual, V, r=0.05, sigma=0.3))(S, 0.5)
        np.testing.assert_allclose(residual, 0.0, atol=RESIDUAL_ATOL)
    # Not a solution: V = S^2 leaves sigma^2 S^2 + r S^2.
    residual = pde_residual(lambda S, t: S**2, S, 0.0, r=0.05, sigma=0.3)
    np.testing.assert_allclose(residual, (0.09 + 0.05) * S**2, rtol=EXACT_RTOL)


def test_heat_transform_of_closed_form(x64):
    """The transformed price is Wilmott's closed form and solves u_tau = u_xx."""
    K, T, r, sigma = 100.0, 1.0, 0.05, 0.2
    k = 2 * r / sigma**2
    x = jnp.linspace(-0.5, 0.5, 9)
    tau = jnp.linspace(0.002, sigma**2 * T / 2, 9)
    for kind, sign in (("call", 1.0), ("put", -1.0)):

        def V(S, t, kind=kind):
            return black_scholes(S, K, T - t, r, sigma, kind=kind)

        u = heat_transform(V, K=K, T=T, r=r, sigma=sigma)
        root = jnp.sqrt(2 * tau)
        d1 = x / root + (k + 1) * root / 2
        d2 = x / root + (k - 1) * root / 2
        wilmott = sign * (
            jnp.exp((k + 1) * x / 2 + (k + 1) ** 2 * tau / 4) * ndtr(sign * d1)
            - jnp.exp((k - 1) * x / 2 + (k - 1) ** 2 * tau / 4) * ndtr(sign * d2)
        )
        np.testing.assert_allclose(u(x, tau), wilmott, rtol=EXACT_RTOL)
        residual = jax.jit(partial(heat_residual, u))(x, tau)
        np.testing.assert_allclose(residual, 0.0, atol=RESIDUAL_ATOL)
    # A function that does not solve the heat equation: u = x^2 tau has residual
    # x^2 - 2 tau.
    residual = heat_residual(lambda x, tau: x**2 * tau, x, tau)
    np.testing.assert_allclose(residual, x**2 - 2 * tau, rtol=EXACT_RTOL)


def test_heat_grid_initial_and_boundary_values(x64):
    k = 2.5
    x, tau, u = solve_heat_equation(k, 0.02, kind="put", num_x=40, num_tau=10)
    assert x.shape == (41,) and tau.shape == (11,) and u.shape == (11, 41)
    payoff = jnp.maximum(jnp.exp((k - 1) * x / 2) - jnp.exp((k + 1) * x / 2), 0.0)
    np.testing.assert_allclose(u[0], payoff, rtol=EXACT_RTOL)
    np.testing.assert_allclose(u[:, -1], 0.0, atol=0)
    left = jnp.exp((k - 1) * x[0] / 2 + (k - 1) ** 2 * tau / 4) - jnp.exp(
        (k + 1) * x[0] / 2 + (k + 1) ** 2 * tau / 4
    )
    np.testing.assert_allclose(u[:, 0], left, rtol=EXACT_RTOL)


@pytest.mark.parametrize("kind", KINDS)
def test_heat_equation_price_converges_at_second_order(x64, kind):
    S = jnp.array([85.0, 100.0, 120.0])
    exact = black_scholes(S, 100.0, 1.0, 0.05, 0.2, kind=kind)

    def error(n):
        price = price_via_heat_equation(
            S, 100.0, 1.0, 0.05, 0.2, kind=kind, num_x=4 * n, num_tau=n
        )
        return jnp.max(jnp.abs(price - exact))

    coarse, fine = error(40), error(80)
    assert coarse < 5e-3
    assert abs(float(jnp.log2(coarse / fine)) - 2) < 0.15


def test_heat_equation_price_default_grid(x64):
    price = price_via_heat_equation(100.0, 100.0, 1.0, 0.05, 0.2)
    np.testing.assert_allclose(price, 10.4506, atol=2e-4)


def test_heat_equation_price_is_differentiable(x64):
    def price(S):
        return price_via_heat_equation(S, 100.0, 1.0, 0.05, 0.2, num_x=200, num_tau=50)

    delta = jax.grad(price)(100.0)
    np.testing.assert_allclose(
        delta, greeks(100.0, 100.0, 1.0, 0.05, 0.2)["delta"], atol=1e-3
    )

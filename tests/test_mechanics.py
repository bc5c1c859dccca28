"""Tests for chainlab.science.mechanics: energy rate, integrators and RK4."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.science.mechanics import (
    METHODS,
    energy_rate,
    integrate,
    odeint,
    relative_energy_error,
    rk4_step,
    vector_field,
)
from chainlab.science.systems import kepler, kepler_pericentre, oscillator, pendulum

# Identities that hold exactly in exact arithmetic, evaluated in float64 over at most
# ~1e3 operations: rounding stays far below 1e-11.
EXACT_ATOL = 1e-11
# Estimated convergence orders from halving dt: within 0.1 of the theoretical order.
ORDER_TOL = 0.1
# Central differences with step 1e-5 in float64: O(h^2) ~ 1e-10 relative error.
FD_STEP = 1e-5
FD_RTOL = 1e-7


def driven(q, p, t):
    """Two coupled oscillators, one driven: explicit dH/dt = -q[0] cos(t) * 0.3."""
    return (
        0.5 * jnp.sum(p**2)
        + 0.5 * jnp.sum(q**2)
        + 0.1 * q[0] * q[1]
        - 0.3 * q[0] * jnp.sin(t)
    )


def non_separable(q, p, t):
    """A position-dependent mass: kinetic energy p^2 (1 + q^2 / 2) / 2."""
    return 0.5 * p**2 * (1.0 + 0.5 * q**2) + 0.5 * q**2


def test_vector_field_is_hamiltons_equations(x64):
    q, p = jnp.array([0.3, -0.2]), jnp.array([1.0, 0.5])
    q_dot, p_dot = vector_field(kepler, q, p, 0.0)
    np.testing.assert_allclose(q_dot, p, atol=EXACT_ATOL)
    np.testing.assert_allclose(p_dot, -q / jnp.linalg.norm(q) ** 3, atol=EXACT_ATOL)


def test_energy_rate_is_explicit_time_derivative(x64):
    q, p, t = jnp.array([0.7, -0.4]), jnp.array([0.2, 1.1]), jnp.asarray(0.9)
    rate = energy_rate(driven, q, p, t)
    np.testing.assert_allclose(rate, -0.3 * q[0] * jnp.cos(t), atol=EXACT_ATOL)
    np.testing.assert_allclose(
        rate, jax.grad(driven, argnums=2)(q, p, t), atol=EXACT_ATOL
    )


def test_energy_rate_matches_finite_difference_along_flow(x64):
    """d/de H(q + e q', p + e p', t + e) at e = 0, by central differences."""
    q, p, t = jnp.array([0.7, -0.4]), jnp.array([0.2, 1.1]), jnp.asarray(0.9)
    q_dot, p_dot = vector_field(driven, q, p, t)

    def along(e):
        return driven(q + e * q_dot, p + e * p_dot, t + e)

    finite_difference = (along(FD_STEP) - along(-FD_STEP)) / (2 * FD_STEP)
    np.testing.assert_allclose(
        energy_rate(driven, q, p, t), finite_difference, rtol=FD_RTOL
    )


@pytest.mark.parametrize("H", [oscillator, kepler, non_separable])
def test_energy_rate_vanishes_without_explicit_time(x64, H):
    q = jnp.array([0.6, 0.8]) if H is not non_separable else jnp.asarray(0.6)
    p = jnp.array([-0.3, 0.9]) if H is not non_separable else jnp.asarray(0.9)
    assert abs(float(energy_rate(H, q, p, 2.0))) < EXACT_ATOL


def test_energy_rate_composes_with_jit_and_vmap(x64):
    qs = jnp.linspace(-1.0, 1.0, 5)[:, None] * jnp.array([1.0, 0.5])[None, :]
    ps = jnp.ones((5, 2))
    ts = jnp.linspace(0.0, 2.0, 5)
    rates = jax.jit(jax.vmap(lambda q, p, t: energy_rate(driven, q, p, t)))(qs, ps, ts)
    np.testing.assert_allclose(rates, -0.3 * qs[:, 0] * jnp.cos(ts), atol=EXACT_ATOL)


def _euler_oscillator(dt: float, steps: int):
    """Explicit Euler on the unit oscillator from q = 1, p = 0."""
    start = jnp.array([1.0]), jnp.array([0.0])
    return integrate(oscillator, *start, dt=dt, steps=steps, method="euler")


def test_euler_energy_grows_by_one_plus_dt_squared(x64):
    """Explicit Euler on the oscillator multiplies the energy by (1 + dt^2) per step."""
    dt, steps = 0.01, 1000
    qs, ps = _euler_oscillator(dt, steps)
    energy = 0.5 * (qs[:, 0] ** 2 + ps[:, 0] ** 2)
    expected = 0.5 * (1 + dt**2) ** jnp.arange(steps + 1)
    np.testing.assert_allclose(energy, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "method, shadow",
    [
        # Exactly conserved modified energies (backward error analysis, computed with
        # sympy): p^2 + q^2 - dt q p and p^2 + (1 - dt^2 / 4) q^2.
        ("symplectic_euler", lambda q, p, dt: p**2 + q**2 - dt * q * p),
        ("leapfrog", lambda q, p, dt: p**2 + (1 - dt**2 / 4) * q**2),
    ],
)
def test_symplectic_methods_conserve_shadow_energy(x64, method, shadow):
    dt = 0.1
    qs, ps = integrate(oscillator, 1.0, 0.0, dt=dt, steps=2000, method=method)
    np.testing.assert_allclose(shadow(qs, ps, dt), shadow(1.0, 0.0, dt), atol=1e-12)


@pytest.mark.parametrize(
    "method, order",
    [("euler", 1), ("symplectic_euler", 1), ("leapfrog", 2), ("rk4", 4)],
)
def test_convergence_order(x64, method, order):
    """Global error at t = 1 against the exact oscillator solution (cos t, -sin t).

    Both runs take 100 steps (one compiled program): dt = 1/100 ends at t = 1, dt =
    1/50 passes it at step 50.
    """

    def error(dt):
        qs, ps = integrate(oscillator, 1.0, 0.0, dt=dt, steps=100, method=method)
        n = round(1.0 / dt)
        return jnp.hypot(qs[n] - jnp.cos(1.0), ps[n] + jnp.sin(1.0))

    estimated = jnp.log2(error(1 / 50) / error(1 / 100))
    assert abs(float(estimated) - order) < ORDER_TOL


def energy_error(H, q0, p0, *, dt, steps, method, fixed_point_iterations=3, span=None):
    """Max relative energy error over the first ``span`` states (all by default)."""
    qs, ps = integrate(
        H,
        q0,
        p0,
        dt=dt,
        steps=steps,
        method=method,
        fixed_point_iterations=fixed_point_iterations,
    )
    qs, ps = qs[:span], ps[:span]
    energies = jax.vmap(H, in_axes=(0, 0, None))(qs, ps, 0.0)
    return jnp.max(jnp.abs(energies - energies[0])) / jnp.abs(energies[0])


def test_kepler_leapfrog_bounded_euler_not(x64):
    """Over ~16 orbits (e = 0.5), leapfrog stays near H0 at O(dt^2); Euler drifts.

    The dt = 0.01 run is the first half of a dt = 0.01 run of the fine run's length,
    so both leapfrog runs share one compiled program.
    """
    q0, p0 = kepler_pericentre(0.5)

    def leapfrog(dt, span):
        return energy_error(
            kepler,
            q0,
            p0,
            dt=dt,
            steps=20_000,
            method="leapfrog",
            fixed_point_iterations=1,
            span=span,
        )

    coarse, fine = leapfrog(0.01, 10_001), leapfrog(0.005, None)
    assert coarse < 1e-3
    assert abs(float(jnp.log2(coarse / fine)) - 2) < ORDER_TOL
    euler = energy_error(kepler, q0, p0, dt=0.01, steps=10_000, method="euler")
    assert euler > 100 * coarse


def test_pendulum_energy_bounded(x64):
    error = energy_error(pendulum, 2.0, 0.0, dt=0.05, steps=20_000, method="leapfrog")
    assert error < 2e-3


def test_non_separable_leapfrog_is_second_order_and_reversible(x64):
    reference, _ = integrate(non_separable, 1.0, 0.0, dt=1e-3, steps=2000, method="rk4")

    def error(steps):
        qs, _ = integrate(
            non_separable,
            1.0,
            0.0,
            dt=2.0 / steps,
            steps=steps,
            fixed_point_iterations=10,
        )
        return jnp.abs(qs[-1] - reference[-1])

    assert abs(float(jnp.log2(error(40) / error(80))) - 2) < ORDER_TOL
    # Stormer-Verlet is time-reversible (H even in p): flipping the momentum and
    # stepping on retraces the path (Hairer, Lubich and Wanner, V.1).
    qs, ps = integrate(
        non_separable, 1.0, 0.5, dt=0.05, steps=40, fixed_point_iterations=30
    )
    back_q, back_p = integrate(
        non_separable, qs[-1], -ps[-1], dt=0.05, steps=40, fixed_point_iterations=30
    )
    np.testing.assert_allclose([back_q[-1], back_p[-1]], [1.0, -0.5], atol=1e-12)


def test_time_dependent_rate_along_trajectory(x64):
    """dH/dt along an RK4 trajectory (central differences) is the explicit dH/dt."""
    dt = 1e-3
    qs, ps = integrate(
        driven,
        jnp.array([1.0, 0.0]),
        jnp.array([0.0, 0.5]),
        dt=dt,
        steps=2000,
        method="rk4",
    )
    ts = dt * jnp.arange(2001)
    energies = jax.vmap(driven)(qs, ps, ts)
    along = (energies[2:] - energies[:-2]) / (2 * dt)
    rates = jax.vmap(lambda q, p, t: energy_rate(driven, q, p, t))(qs, ps, ts)
    # Central-difference truncation error dt^2 / 6 |d^3H/dt^3| ~ 1e-7.
    np.testing.assert_allclose(along, rates[1:-1], atol=1e-6)


def test_shapes_and_initial_state():
    q0, p0 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    for method in METHODS:
        qs, ps = integrate(kepler, q0, p0, dt=0.1, steps=7, method=method)
        assert qs.shape == ps.shape == (8, 2)
        assert qs.dtype == jnp.float32
        np.testing.assert_array_equal(qs[0], q0)
        np.testing.assert_array_equal(ps[0], p0)
        assert jnp.all(jnp.isfinite(qs)) and jnp.all(jnp.isfinite(ps)), method


@pytest.mark.parametrize("method", METHODS)
def test_gradients_through_integrator(x64, method):
    def final_energy(q0, p0):
        qs, ps = integrate(pendulum, q0, p0, dt=0.1, steps=5, method=method)
        return pendulum(qs[-1], ps[-1], 0.0)

    check_grads(final_energy, (0.5, 0.2), order=1, modes=("fwd", "rev"))


def test_python_scalars_do_not_promote_float32_states(x64):
    """Under x64, float32 states stay float32: Python scalars (t, dt) are weak."""
    q, p = jnp.float32(1.0), jnp.float32(0.5)
    assert all(v.dtype == jnp.float32 for v in vector_field(oscillator, q, p, 0.0))
    assert (
        energy_rate(
            driven, jnp.ones(2, jnp.float32), jnp.ones(2, jnp.float32), 0.3
        ).dtype
        == jnp.float32
    )
    qs, ps = integrate(oscillator, q, p, dt=0.1, steps=3, method="rk4")
    assert qs.dtype == ps.dtype == jnp.float32
    assert vector_field(oscillator, 1, 2, 0)[0].dtype == jnp.float64


def test_odeint_is_fourth_order_on_a_pytree(x64):
    """y' = -y and z' = 2 z together from (1, 1): errors at t = 1 fall 16-fold."""

    def f(y, t):
        return {"a": -y["a"], "b": 2 * y["b"]}

    y0 = {"a": jnp.asarray(1.0), "b": jnp.asarray(1.0)}

    def error(dt):  # one program: 40 steps either way, t = 1 at step 1 / dt
        ys = odeint(f, y0, dt=dt, steps=40)
        n = round(1 / dt)
        return abs(float(ys["a"][n] - np.exp(-1.0))), abs(float(ys["b"][n] - np.e**2))

    for coarse, fine in zip(error(0.05), error(0.025), strict=True):
        assert abs(np.log2(coarse / fine) - 4) < ORDER_TOL


def test_one_rk4_serves_integrate_and_odeint(x64):
    """integrate(method="rk4") takes rk4_step's steps on Hamilton's vector field."""
    qs, ps = integrate(pendulum, 1.0, 0.3, dt=0.1, steps=3, method="rk4")
    ys = odeint(lambda y, t: vector_field(pendulum, *y, t), (1.0, 0.3), dt=0.1, steps=3)
    chex.assert_trees_all_close((qs, ps), ys, atol=1e-15)
    one = rk4_step(lambda y, t: vector_field(pendulum, *y, t), (1.0, 0.3), 0.0, 0.1)
    chex.assert_trees_all_close(one, (qs[1], ps[1]), atol=1e-15)


def test_relative_energy_error_with_one_time_or_many(x64):
    dt, steps = 0.01, 50
    qs, ps = _euler_oscillator(dt, steps)
    expected = (1 + dt**2) ** jnp.arange(steps + 1) - 1  # Euler's energy gain
    error = relative_energy_error(oscillator, qs, ps)
    chex.assert_trees_all_close(error, expected, rtol=1e-10, atol=1e-15)

    def driven(q, p, t):  # H_n = (1 + t_n) H_0 when the state stands still
        return (1.0 + t) * oscillator(q, p, t)

    still = jnp.ones((4, 1))
    ts = jnp.arange(4.0)
    chex.assert_trees_all_close(relative_energy_error(driven, still, still, ts), ts)

"""Tests for chainlab.science.systems: named Hamiltonians and their known answers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab.science.mechanics import energy_rate, integrate, vector_field
from chainlab.science.systems import (
    angular_momentum,
    harmonic_flow,
    kepler,
    kepler_pericentre,
    oscillator,
    parametric_oscillator,
    pendulum,
    spring,
)

# Identities exact in exact arithmetic, in float64 over ~1e3 operations.
EXACT_ATOL = 1e-11


def test_exact_flow_conserves_energy_and_solves_hamiltons_equations(x64):
    """harmonic_flow is the flow of oscillator (frequency 1) and spring (2)."""
    q0, p0 = jnp.array([0.3, -1.2]), jnp.array([0.8, 0.1])
    times = jnp.linspace(0.0, 50.0, 7)
    for H, frequency in ((oscillator, 1.0), (spring, 2.0)):
        qs, ps = harmonic_flow(q0[None], p0[None], times[:, None], frequency=frequency)
        energies = jax.vmap(H, in_axes=(0, 0, None))(qs, ps, 0.0)
        chex.assert_trees_all_close(energies, jnp.full(7, H(q0, p0, 0.0)), atol=1e-12)
        # d/dt of the flow at t = 0.7 is Hamilton's vector field there.
        state, velocity = jax.jvp(
            lambda t, f=frequency: harmonic_flow(q0, p0, t, frequency=f),
            (jnp.asarray(0.7),),
            (jnp.asarray(1.0),),
        )
        chex.assert_trees_all_close(
            velocity, vector_field(H, *state, 0.0), atol=EXACT_ATOL
        )


def test_kepler_pericentre_energy_and_angular_momentum(x64):
    for e in (0.0, 0.5, 0.9):
        q0, p0 = kepler_pericentre(e)
        np.testing.assert_allclose(kepler(q0, p0, 0.0), -0.5, atol=EXACT_ATOL)
        np.testing.assert_allclose(
            angular_momentum(q0, p0), np.sqrt(1 - e**2), atol=EXACT_ATOL
        )


def test_kepler_orbit_closes_after_one_period_with_angular_momentum_kept(x64):
    """Period 2 pi (semi-major axis 1); leapfrog keeps L = q x p to rounding (a
    quadratic invariant of every central force, Hairer-Lubich-Wanner IV.2)."""
    q0, p0 = kepler_pericentre(0.5)
    steps = 2000
    qs, ps = integrate(kepler, q0, p0, dt=2 * np.pi / steps, steps=steps, method="rk4")
    chex.assert_trees_all_close((qs[-1], ps[-1]), (q0, p0), atol=1e-6)
    qs, ps = integrate(kepler, q0, p0, dt=0.01, steps=steps, fixed_point_iterations=1)
    np.testing.assert_allclose(
        angular_momentum(qs, ps), np.sqrt(0.75), rtol=0, atol=1e-12
    )


def test_pendulum_small_angles_oscillate_at_unit_frequency(x64):
    q0 = 1e-3
    qs, _ = integrate(pendulum, q0, 0.0, dt=np.pi / 500, steps=1000, method="rk4")
    np.testing.assert_allclose(qs[-1], q0 * np.cos(2 * np.pi), rtol=1e-6)
    assert float(pendulum(0.0, 0.0, 0.0)) == -1.0


def test_parametric_oscillator_rate_is_explicit_time_derivative(x64):
    w0, eps, omega = 1.0, 0.3, 1.3
    H = parametric_oscillator(w0=w0, eps=eps, omega=omega)
    q, p, t = jnp.asarray(0.7), jnp.asarray(-0.4), jnp.asarray(2.1)
    w = w0 * (1 + eps * np.cos(omega * t))
    by_hand = -w * w0 * eps * omega * np.sin(omega * t) * q**2
    np.testing.assert_allclose(energy_rate(H, q, p, t), by_hand, atol=EXACT_ATOL)
    np.testing.assert_allclose(H(q, p, 0.0), 0.5 * p**2 + 0.5 * 1.3**2 * q**2)


@pytest.mark.parametrize("e", [-0.1, 1.0, jnp.array([0.5, 1.5])])
def test_kepler_pericentre_refuses_unbound_orbits(e):
    with pytest.raises(ValueError, match=r"eccentricity must be in \[0, 1\)"):
        kepler_pericentre(e)

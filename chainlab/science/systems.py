"""Named Hamiltonians ``H(q, p, t)`` of classical mechanics, with their exact answers.

Each system is a scalar function of positions q, momenta p (one shape) and time t, as
``chainlab.science.mechanics`` takes it, in units where every constant is 1:

- ``oscillator``: H = (p^2 + q^2) / 2, the flow rotates (q, p) at frequency 1.
- ``spring``: H = q^2 + p^2, the ideal spring of Greydanus et al. (2019), frequency 2.
- ``pendulum``: H = p^2 / 2 - cos q (g / l = 1).
- ``kepler``: H = |p|^2 / 2 - 1 / |q| (GM = 1), with ``kepler_pericentre`` for the
  start of an orbit and ``angular_momentum`` for its second conserved quantity.
- ``parametric_oscillator``: H = p^2 / 2 + w(t)^2 q^2 / 2, w(t) = w0 (1 + eps cos(W t)),
  explicitly time dependent, so its energy changes at the rate dH/dt|explicit.

The harmonic ones have the exact flow ``harmonic_flow``, against which integrators are
measured, and ``spring_observations`` samples the noisy spring data on which
Hamiltonian neural networks are trained. Reference: Goldstein, Poole and Safko,
*Classical Mechanics* (3rd ed., 2002), ch. 3 (Kepler) and 8 (Hamilton's equations).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_finite,
    check_in_range,
    check_nonnegative,
    check_shape,
)

__all__ = [
    "angular_momentum",
    "harmonic_flow",
    "kepler",
    "kepler_pericentre",
    "oscillator",
    "parametric_oscillator",
    "pendulum",
    "spring",
    "spring_observations",
]


def oscillator(q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
    """Harmonic oscillator, unit mass and frequency: H = (|p|^2 + |q|^2) / 2.

    >>> float(oscillator(jnp.asarray(1.0), jnp.asarray(1.0), 0.0))
    1.0
    """
    return 0.5 * (jnp.sum(jnp.square(p)) + jnp.sum(jnp.square(q)))


def spring(q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
    """The ideal spring of Greydanus, Dzamba and Yosinski (2019): H = |q|^2 + |p|^2.

    Its flow is ``harmonic_flow`` with frequency 2: q' = 2p, p' = -2q.

    >>> float(spring(jnp.asarray(1.0), jnp.asarray(1.0), 0.0))
    2.0
    """
    return jnp.sum(jnp.square(q)) + jnp.sum(jnp.square(p))


def pendulum(q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
    """Mathematical pendulum, g / l = 1: H = p^2 / 2 - cos q (summed over pendulums).

    >>> float(pendulum(jnp.asarray(0.0), jnp.asarray(0.0), 0.0))
    -1.0
    """
    return jnp.sum(0.5 * jnp.square(p) - jnp.cos(q))


def kepler(q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
    """Kepler problem, GM = 1: H = |p|^2 / 2 - 1 / |q|, for q, p of shape (d,).

    Conserves the energy and the angular momentum ``angular_momentum(q, p)``; a bound
    orbit (H < 0) has semi-major axis a = -1 / (2 H) and period 2 pi a^{3/2}.

    >>> float(kepler(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 0.0))
    -0.5
    """
    return 0.5 * jnp.sum(jnp.square(p)) - 1.0 / jnp.linalg.norm(q)


def kepler_pericentre(eccentricity: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """(q0, p0) at the pericentre of a Kepler orbit with semi-major axis 1.

    q0 = (1 - e, 0), p0 = (0, sqrt((1 + e) / (1 - e))) (vis-viva): energy -1/2,
    period 2 pi, angular momentum sqrt(1 - e^2) (Goldstein, sec. 3.7). Needs
    0 <= e < 1 (a bound orbit), checked when concrete.

    >>> q0, p0 = kepler_pericentre(0.0)
    >>> float(kepler(q0, p0, 0.0)), float(angular_momentum(q0, p0))
    (-0.5, 1.0)
    """
    check_in_range("eccentricity", eccentricity, 0, 1)
    e = as_real_float("eccentricity", eccentricity)
    zero = jnp.zeros_like(e)
    return jnp.stack([1.0 - e, zero]), jnp.stack([zero, jnp.sqrt((1 + e) / (1 - e))])


def angular_momentum(q: ArrayLike, p: ArrayLike) -> jax.Array:
    """Planar angular momentum L = q_x p_y - q_y p_x of states ``(..., 2)``.

    Conserved by every central force (Goldstein, sec. 3.1), so by ``kepler``.

    >>> float(angular_momentum(jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])))
    2.0
    """
    q, p = jnp.asarray(q), jnp.asarray(p)
    check_shape("q", q, (*q.shape[:-1], 2))
    check_shape("p", p, q.shape)
    return q[..., 0] * p[..., 1] - q[..., 1] * p[..., 0]


def parametric_oscillator(
    *, w0: float, eps: float, omega: float
) -> Callable[[ArrayLike, ArrayLike, ArrayLike], jax.Array]:
    """H(q, p, t) = p^2 / 2 + w(t)^2 q^2 / 2 with w(t) = w0 (1 + eps cos(omega t)).

    A frequency driven in time: dH/dt|explicit = w w' q^2 = -w w0 eps omega sin(omega
    t) q^2, the rate at which the energy changes along the flow. It resonates near
    omega = 2 w0 / n (Landau and Lifshitz, *Mechanics*, sec. 27). Settings must be
    finite, checked when concrete.

    >>> H = parametric_oscillator(w0=1.0, eps=0.5, omega=1.0)
    >>> float(H(jnp.asarray(1.0), jnp.asarray(0.0), 0.0))  # w(0) = 1.5
    1.125
    """
    for name, value in (("w0", w0), ("eps", eps), ("omega", omega)):
        check_finite(name, value)

    def H(q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
        w = w0 * (1.0 + eps * jnp.cos(omega * t))
        return jnp.sum(0.5 * jnp.square(p) + 0.5 * w**2 * jnp.square(q))

    return H


def harmonic_flow(
    q0: ArrayLike, p0: ArrayLike, t: ArrayLike, *, frequency: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """The exact flow of H = frequency (|p|^2 + |q|^2) / 2 from (q0, p0) to time t.

        q(t) = q0 cos(w t) + p0 sin(w t),   p(t) = p0 cos(w t) - q0 sin(w t),

    a rotation of phase space, so it conserves H exactly; frequency 1 is
    ``oscillator`` and 2 is ``spring``. q0, p0 and t broadcast.

    >>> q, p = harmonic_flow(1.0, 0.0, jnp.pi / 2)
    >>> round(float(q), 6) + 0.0, round(float(p), 6)
    (0.0, -1.0)
    """
    check_finite("frequency", frequency)
    q0, p0 = as_real_float("q0", q0), as_real_float("p0", p0)
    angle = frequency * as_real_float("t", t)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return q0 * cos + p0 * sin, p0 * cos - q0 * sin


def spring_observations(
    rng: np.random.Generator,
    *,
    trajectories: int,
    points: int,
    t_max: float,
    noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy observations of ideal-spring trajectories (Greydanus et al. 2019, sec. 3).

    Each trajectory starts at radius U(0.1, 1) in a uniformly random direction of
    (q, p) and follows ``harmonic_flow`` with frequency 2 (the flow of ``spring``); it
    is observed ``points`` times on [0, t_max] with N(0, noise^2) noise on the states.
    Returns float32 ``(states, derivatives, starts)``: the noisy states and the exact
    time derivatives (q', p') = (2 p, -2 q) of the clean ones, both ``(trajectories,
    points, 2)``, and the clean initial states ``(trajectories, 2)``.

    >>> states, derivatives, starts = spring_observations(
    ...     np.random.default_rng(0), trajectories=3, points=5, t_max=1.0, noise=0.0)
    >>> states.shape, bool(np.allclose(states[:, 0], starts))
    ((3, 5, 2), True)
    """
    check_at_least("trajectories", trajectories, 1)
    check_at_least("points", points, 1)
    check_nonnegative("t_max", t_max)
    check_nonnegative("noise", noise)
    angle = rng.uniform(0.0, 2 * np.pi, size=(trajectories, 1))
    radius = rng.uniform(0.1, 1.0, size=(trajectories, 1))
    t = np.linspace(0.0, t_max, points)[None, :]
    q0, p0 = radius * np.cos(angle), radius * np.sin(angle)
    q, p = np.asarray(harmonic_flow(q0, p0, t, frequency=2.0))
    states = np.stack([q, p], axis=-1) + noise * rng.normal(size=(*q.shape, 2))
    derivatives = np.stack([2 * p, -2 * q], axis=-1)
    starts = np.hstack([q0, p0])
    return tuple(a.astype(np.float32) for a in (states, derivatives, starts))

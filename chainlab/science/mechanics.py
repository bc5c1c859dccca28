"""Hamiltonian mechanics: the energy rate by the chain rule, and integrators.

A Hamiltonian is a scalar function ``H(q, p, t)`` of positions q, momenta p (arrays of
one shape) and time t. Hamilton's equations are

    dq/dt = dH/dp,    dp/dt = -dH/dq,

and along their flow the chain rule gives the rate of change of the energy,

    dH/dt = dH/dq . dq/dt + dH/dp . dp/dt + dH/dt|explicit
          = dH/dq . dH/dp - dH/dp . dH/dq + dH/dt|explicit = dH/dt|explicit,

so energy is conserved exactly when H does not depend on time explicitly. Numerical
integrators conserve it only approximately: explicit Euler gains energy every step,
while symplectic schemes (symplectic Euler, leapfrog) keep the error bounded over
exponentially long times (backward error analysis). ``rk4_step`` is the library's one
classical Runge-Kutta step, behind ``integrate(..., method="rk4")`` and ``odeint``
(any vector field, e.g. a learned one). Named systems live in
``chainlab.science.systems``.

Reference: Hairer, Lubich and Wanner, *Geometric Numerical Integration* (2nd ed.,
2006), ch. I and VI.
"""

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_positive,
    check_rank,
    check_same_shape,
    check_scalar_output,
    check_shape,
)

__all__ = [
    "METHODS",
    "energy_rate",
    "integrate",
    "odeint",
    "relative_energy_error",
    "rk4_step",
    "vector_field",
]

Hamiltonian = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
Method = Literal["euler", "symplectic_euler", "leapfrog", "rk4"]

#: The integrators of ``integrate``.
METHODS: tuple[str, ...] = get_args(Method)


def _state(H: Hamiltonian, q: ArrayLike, p: ArrayLike, t: ArrayLike):
    """Floating-point q, p (same shape) and a scalar time, of one dtype; H scalar."""
    dtype = jnp.result_type(q, p, t)  # Python scalars are weak: they do not promote
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    q, p, t = jnp.asarray(q), jnp.asarray(p), jnp.asarray(t)
    check_same_shape(q=q, p=p)
    check_rank("t", t, 0)
    q, p, t = q.astype(dtype), p.astype(dtype), t.astype(dtype)
    check_scalar_output("H(q, p, t)", H, q, p, t)
    return q, p, t


def vector_field(
    H: Hamiltonian, q: ArrayLike, p: ArrayLike, t: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Hamilton's equations: ``(dq/dt, dp/dt) = (dH/dp, -dH/dq)``.

    Example (harmonic oscillator H = (p^2 + q^2) / 2):

    >>> H = lambda q, p, t: 0.5 * (p**2 + q**2)
    >>> [float(v) for v in vector_field(H, 1.0, 2.0, 0.0)]
    [2.0, -1.0]
    """
    q, p, t = _state(H, q, p, t)
    return _vector_field(H, q, p, t)


def _vector_field(H: Hamiltonian, q, p, t) -> tuple[jax.Array, jax.Array]:
    dH_dq, dH_dp = jax.grad(H, argnums=(0, 1))(q, p, t)
    return dH_dp, -dH_dq


def energy_rate(H: Hamiltonian, q: ArrayLike, p: ArrayLike, t: ArrayLike) -> jax.Array:
    """dH/dt along Hamilton's flow through (q, p) at time t, by the chain rule.

    One forward-mode derivative of H along the flow direction (dq/dt, dp/dt, 1):

        dH/dt = dH/dq . dq/dt + dH/dp . dp/dt + dH/dt|explicit,

    which equals the explicit time derivative dH/dt|explicit, and 0 for a
    time-independent H. q and p may be scalars or arrays (of one shape); t is a scalar.

    Example (oscillator with a driving force, H = (p^2 + q^2) / 2 - q sin t):

    >>> H = lambda q, p, t: 0.5 * (p**2 + q**2) - q * jnp.sin(t)
    >>> round(float(energy_rate(H, 2.0, 1.0, 0.0)), 4)  # -q cos t
    -2.0
    """
    q, p, t = _state(H, q, p, t)
    q_dot, p_dot = _vector_field(H, q, p, t)
    _, rate = jax.jvp(H, (q, p, t), (q_dot, p_dot, jnp.ones_like(t)))
    return rate


def relative_energy_error(
    H: Hamiltonian, qs: ArrayLike, ps: ArrayLike, ts: ArrayLike = 0.0
) -> jax.Array:
    """The relative energy error ``|H_n - H_0| / |H_0|`` along a trajectory, with
    ``H_n = H(q_n, p_n, t_n)``.

    ``qs`` and ``ps`` are ``(N, ...)`` states, as ``integrate`` returns; ``ts`` is one
    time for all (enough for a time-independent H) or ``(N,)`` times. Returns ``(N,)``,
    0 at the start; infinite or NaN when the initial energy is 0.

    Example (explicit Euler on the oscillator gains a factor 1 + dt^2 per step):

    >>> H = lambda q, p, t: 0.5 * (p**2 + q**2)
    >>> qs, ps = integrate(H, 1.0, 0.0, dt=0.1, steps=2, method="euler")
    >>> [round(float(e), 4) for e in relative_energy_error(H, qs, ps)]
    [0.0, 0.01, 0.0201]
    """
    qs, ps = as_real_float("qs", qs), as_real_float("ps", ps)
    check_same_shape(qs=qs, ps=ps)
    if qs.ndim == 0:
        raise ValueError("qs must have a leading axis of states, got shape ()")
    ts = as_real_float("ts", ts)
    check_rank("ts", ts, {0, 1})
    if ts.ndim == 1:
        check_shape("ts", ts, qs.shape[:1])
    ts = jnp.broadcast_to(ts, qs.shape[:1])
    energies = jax.vmap(H)(qs, ps, ts)
    return jnp.abs(energies - energies[0]) / jnp.abs(energies[0])


def _euler(H, q, p, t, dt, iterations):
    q_dot, p_dot = _vector_field(H, q, p, t)
    return q + dt * q_dot, p + dt * p_dot


def _symplectic_euler(H, q, p, t, dt, iterations):
    # p1 = p - dt dH/dq(q, p1, t), q1 = q + dt dH/dp(q, p1, t): implicit in p1 unless
    # H is separable; fixed-point iteration from p1 = p (the first is exact if it is).
    dH_dq = jax.grad(H, argnums=0)
    dH_dp = jax.grad(H, argnums=1)
    p1 = p
    for _ in range(iterations):
        p1 = p - dt * dH_dq(q, p1, t)
    return q + dt * dH_dp(q, p1, t), p1


def _leapfrog(H, q, p, t, dt, iterations):
    # Stormer-Verlet for a general H (Hairer, Lubich and Wanner, eq. VI.3.4):
    #   p_half = p - dt/2 dH/dq(q, p_half, t)
    #   q1     = q + dt/2 (dH/dp(q, p_half, t) + dH/dp(q1, p_half, t + dt))
    #   p1     = p_half - dt/2 dH/dq(q1, p_half, t + dt)
    # For a separable H = T(p) + V(q, t) the first fixed-point iteration of each
    # implicit stage is already exact: kick, drift, kick.
    dH_dq = jax.grad(H, argnums=0)
    dH_dp = jax.grad(H, argnums=1)
    half = dt / 2
    p_half = p
    for _ in range(iterations):
        p_half = p - half * dH_dq(q, p_half, t)
    velocity = dH_dp(q, p_half, t)
    q1 = q + dt * velocity
    for _ in range(iterations):
        q1 = q + half * (velocity + dH_dp(q1, p_half, t + dt))
    return q1, p_half - half * dH_dq(q1, p_half, t + dt)


def rk4_step(f: Callable[[Any, jax.Array], Any], y: Any, t: ArrayLike, dt: ArrayLike):
    """One classical Runge-Kutta step of y' = f(y, t) for a pytree state y.

        k1 = f(y, t),                 k2 = f(y + dt/2 k1, t + dt/2),
        k3 = f(y + dt/2 k2, t + dt/2), k4 = f(y + dt k3, t + dt),
        y1 = y + dt/6 (k1 + 2 k2 + 2 k3 + k4)

    (Hairer, Norsett and Wanner, *Solving Ordinary Differential Equations I*, II.1),
    order 4. The one RK4 of the library: ``integrate(..., method="rk4")`` and
    ``odeint`` take their steps with it. Traceable; no checks.

    Example (y' = y from y = 1: one step of 0.1 gives e^0.1 to 1e-7):

    >>> round(float(rk4_step(lambda y, t: y, 1.0, 0.0, 0.1)), 7)
    1.1051708
    """

    def axpy(a, x, y):
        return jax.tree.map(lambda u, v: u + a * v, y, x)

    k1 = f(y, t)
    k2 = f(axpy(dt / 2, k1, y), t + dt / 2)
    k3 = f(axpy(dt / 2, k2, y), t + dt / 2)
    k4 = f(axpy(dt, k3, y), t + dt)
    return jax.tree.map(
        lambda y, a, b, c, d: y + dt / 6 * (a + 2 * b + 2 * c + d), y, k1, k2, k3, k4
    )


def _rk4(H, q, p, t, dt, iterations):
    return rk4_step(lambda state, time: _vector_field(H, *state, time), (q, p), t, dt)


_STEPS = {
    "euler": _euler,
    "symplectic_euler": _symplectic_euler,
    "leapfrog": _leapfrog,
    "rk4": _rk4,
}


@partial(jax.jit, static_argnames=("H", "steps", "method", "iterations"))
def _integrate(H, q0, p0, dt, t0, *, steps, method, iterations):
    step = _STEPS[method]

    def body(state, n):
        q, p = step(H, *state, t0 + n * dt, dt, iterations)
        return (q, p), (q, p)

    numbers = jnp.arange(steps, dtype=q0.dtype)
    _, (qs, ps) = jax.lax.scan(body, (q0, p0), numbers)
    return (
        jnp.concatenate([q0[None], qs]),
        jnp.concatenate([p0[None], ps]),
    )


def integrate(
    H: Hamiltonian,
    q0: ArrayLike,
    p0: ArrayLike,
    *,
    dt: float,
    steps: int,
    method: Method = "leapfrog",
    t0: float = 0.0,
    fixed_point_iterations: int = 3,
) -> tuple[jax.Array, jax.Array]:
    """Integrate Hamilton's equations from (q0, p0) at time t0 for ``steps`` steps.

    Returns ``(qs, ps)`` of shape ``(steps + 1, *q0.shape)``: the state at times
    ``t0 + n dt`` for n = 0..steps, the initial state first. The loop is a
    ``jax.lax.scan`` compiled once per (H, shapes, steps, method): pass the same H
    object to reuse it. It is differentiable in q0, p0, dt and t0.

    Methods (Hairer, Lubich and Wanner 2006):

    - ``"euler"``: explicit Euler, order 1, not symplectic: the energy of an oscillator
      grows by a factor (1 + dt^2) per step.
    - ``"symplectic_euler"``: p1 = p - dt dH/dq(q, p1), q1 = q + dt dH/dp(q, p1);
      order 1, symplectic, energy error bounded, O(dt).
    - ``"leapfrog"``: Stormer-Verlet (half kick, drift, half kick for separable H);
      order 2, symplectic and time-reversible, energy error bounded, O(dt^2).
    - ``"rk4"``: classical Runge-Kutta, order 4, not symplectic: small but slowly
      drifting energy error.

    The symplectic methods are implicit for a non-separable H (kinetic energy depending
    on q); their implicit stages are solved by ``fixed_point_iterations`` iterations
    (enough when dt |d^2H/dq dp| << 1). For a separable H = T(p) + V(q, t) the first
    iteration is already exact, so ``fixed_point_iterations=1`` gives the classical
    explicit scheme at the lowest cost.

    Example (one period of the oscillator H = (p^2 + q^2) / 2 returns to the start,
    with the energy 1/2 it started with):

    >>> H = lambda q, p, t: 0.5 * (p**2 + q**2)
    >>> qs, ps = integrate(H, 1.0, 0.0, dt=2 * 3.14159265 / 1000, steps=1000)
    >>> qs.shape, round(float(qs[-1]), 4), round(float(H(qs[-1], ps[-1], 0.0)), 4)
    ((1001,), 1.0, 0.5)
    """
    check_choice("method", method, METHODS)
    check_at_least("steps", steps, 1)
    check_at_least("fixed_point_iterations", fixed_point_iterations, 1)
    check_positive("dt", dt)
    q0, p0, t0 = _state(H, q0, p0, t0)
    dt = as_real_float("dt", dt).astype(q0.dtype)
    check_rank("dt", dt, 0)
    return _integrate(
        H,
        q0,
        p0,
        dt,
        t0,
        steps=steps,
        method=method,
        iterations=fixed_point_iterations,
    )


def odeint(
    f: Callable[[Any, jax.Array], Any],
    y0: Any,
    *,
    dt: ArrayLike,
    steps: int,
    t0: ArrayLike = 0.0,
) -> Any:
    """Solve y' = f(y, t) from y0 at t0 by ``steps`` RK4 steps of size dt.

    For any vector field, Hamiltonian or not (a learned one, say); ``y0`` is any
    pytree of arrays and f returns one of the same structure. Returns the states at
    ``t0 + n dt``, n = 0..steps, stacked on a new leading axis, the initial state
    first. A ``jax.lax.scan`` of ``rk4_step``, so it traces once and composes with
    ``jit``, ``vmap`` and ``grad``. ``steps >= 1`` always and ``dt > 0`` when
    concrete (a traced dt is not checked).

    Example (y' = -y from 1: e^{-1} = 0.36788 at t = 1, in float32):

    >>> ys = odeint(lambda y, t: -y, 1.0, dt=0.01, steps=100)
    >>> ys.shape, round(float(ys[-1]), 5)
    ((101,), 0.36788)
    """
    check_at_least("steps", steps, 1)
    check_positive("dt", dt)
    check_rank("dt", dt, 0)
    check_rank("t0", t0, 0)
    y0 = jax.tree.map(jnp.asarray, y0)

    def body(y, n):
        y = rk4_step(f, y, t0 + n * dt, dt)
        return y, y

    _, ys = jax.lax.scan(body, y0, jnp.arange(steps))
    return jax.tree.map(
        lambda first, rest: jnp.concatenate([first[None], rest]), y0, ys
    )

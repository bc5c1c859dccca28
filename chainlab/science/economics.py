"""Comparative statics by the implicit function theorem, and an IS-LM economy.

An equilibrium is a point x* with F(x*, theta) = 0, where x are the endogenous variables
(``(n,)``) and theta the exogenous parameters (``(m,)``). Totally differentiating
F(x*(theta), theta) = 0 by the chain rule gives

    dF/dx . dx*/dtheta + dF/dtheta = 0   =>   dx*/dtheta = -(dF/dx)^-1 dF/dtheta,

which exists and is unique when dF/dx is invertible (implicit function theorem). Both
Jacobians come from JAX, so any differentiable F works.

Reference: Simon and Blume, *Mathematics for Economists* (1994), ch. 15; Mankiw,
*Macroeconomics*, ch. 11-12 (IS-LM and aggregate demand).
"""

from collections.abc import Callable
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_nonnegative,
    check_positive,
    check_rank,
    check_shape,
    concrete,
)

EquilibriumSystem = Callable[[jax.Array, jax.Array], jax.Array]

#: Endogenous variables of the IS-LM model, in the order used by ``islm_residual``.
ISLM_VARIABLES = ("Y", "r")
#: Exogenous parameters of the IS-LM model, in the order used by ``islm_residual``.
ISLM_PARAMETERS = ("G", "T", "M", "P")


def _vector(name: str, value: ArrayLike) -> jax.Array:
    """``value`` as a real floating vector ``(n,)``."""
    array = as_real_float(name, value)
    check_rank(name, array, 1)
    return array


def _is_singular(matrix: jax.Array) -> jax.Array:
    """Numerically singular: smallest singular value below n * eps * largest.

    This is NumPy's ``matrix_rank`` tolerance: below it, a linear solve amplifies
    rounding errors beyond the size of the answer.
    """
    singular_values = jnp.linalg.svd(jax.lax.stop_gradient(matrix), compute_uv=False)
    eps = jnp.finfo(matrix.dtype).eps
    tolerance = singular_values[0] * matrix.shape[0] * eps
    return ~(singular_values[-1] > tolerance)  # also True for NaN or inf entries


def comparative_statics(
    F: EquilibriumSystem, x: ArrayLike, theta: ArrayLike
) -> jax.Array:
    """Derivatives dx*/dtheta of an equilibrium F(x*, theta) = 0, shape ``(n, m)``.

    By the implicit function theorem, dx*/dtheta = -(dF/dx)^-1 dF/dtheta, with both
    Jacobians from ``jax.jacfwd`` and one linear solve (no inverse is formed). Entry
    ``[i, j]`` is the effect of parameter j on variable i.

    Args:
        F: the equilibrium conditions, ``F(x, theta) -> (n,)``.
        x: an equilibrium, ``(n,)`` (e.g. from ``solve_equilibrium``); the formula is
            only meaningful where F(x, theta) = 0.
        theta: the parameters, ``(m,)``.

    Raises:
        ValueError: if dF/dx is numerically singular (the equilibrium is not locally
            unique, so it has no derivative). This check needs concrete values: under
            ``jax.jit`` or ``jax.vmap`` the result is NaN instead, so a singular case
            can never pass as a number.

    Example (Mankiw's IS-LM: effect of G, T, M, P on output Y and interest rate r):

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> F = lambda x, theta: islm_residual(model, x, theta)
    >>> theta = jnp.array([100.0, 100.0, 1000.0, 2.0])
    >>> dx = comparative_statics(F, jnp.array([1100.0, 6.0]), theta)
    >>> [round(float(v), 4) for v in dx[0]]  # dY/dG, dY/dT, dY/dM, dY/dP
    [2.0, -1.5, 0.25, -125.0]
    """
    x = _vector("x", x)
    theta = _vector("theta", theta)
    check_shape("F(x, theta)", jax.eval_shape(F, x, theta), x.shape)
    dF_dx = jax.jacfwd(F, argnums=0)(x, theta)
    dF_dtheta = jax.jacfwd(F, argnums=1)(x, theta)
    singular = _is_singular(dF_dx)
    if concrete(singular):
        raise ValueError(
            "dF/dx is singular at x: the equilibrium is not locally unique, so "
            "dx*/dtheta is undefined (check the model or the point x)"
        )
    derivative = jnp.linalg.solve(dF_dx, -dF_dtheta)
    return jnp.where(singular, jnp.nan, derivative)


def solve_equilibrium(
    F: EquilibriumSystem,
    x0: ArrayLike,
    theta: ArrayLike,
    *,
    max_steps: int = 50,
    tolerance: float | None = None,
) -> jax.Array:
    """Solve F(x, theta) = 0 for x by Newton's method, differentiable in theta.

    Newton iterates x <- x - (dF/dx)^-1 F(x, theta) from ``x0`` until the step is below
    ``tolerance * (1 + |x|)``. The derivative of the result is not obtained by
    differentiating the iterations: ``jax.lax.custom_root`` applies the implicit
    function theorem at the solution, dx*/dtheta = -(dF/dx)^-1 dF/dtheta, so
    ``jax.grad``, ``jax.jacfwd`` and ``jax.jacrev`` through it are exact (up to the
    accuracy of x*) and cost one linear solve.

    Args:
        F: the equilibrium conditions, ``F(x, theta) -> (n,)``.
        x0: the starting point, ``(n,)``; Newton's method converges from close enough.
        theta: the parameters, ``(m,)``.
        max_steps: the most Newton steps.
        tolerance: relative step size at which to stop; default sqrt(machine epsilon)
            (Newton converges quadratically, so the last step leaves an error of about
            machine epsilon).

    Raises:
        ValueError: if Newton's method does not converge in ``max_steps`` steps.
            Under ``jax.jit`` or ``jax.vmap`` this cannot be raised: the result is NaN
            instead.

    Example:

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> F = lambda x, theta: islm_residual(model, x, theta)
    >>> theta = jnp.array([100.0, 100.0, 1000.0, 2.0])
    >>> [round(float(v), 3) for v in solve_equilibrium(F, jnp.zeros(2), theta)]
    [1100.0, 6.0]
    >>> output = lambda theta: solve_equilibrium(F, jnp.zeros(2), theta)[0]
    >>> round(float(jax.grad(output)(theta)[0]), 4)  # dY/dG, the multiplier
    2.0
    """
    x0 = _vector("x0", x0)
    theta = _vector("theta", theta)
    check_at_least("max_steps", max_steps, 1)
    if tolerance is not None:
        check_positive("tolerance", tolerance)
    check_shape("F(x, theta)", jax.eval_shape(F, x0, theta), x0.shape)
    dtype = jnp.result_type(x0.dtype, theta.dtype)
    x0 = x0.astype(dtype)
    if tolerance is None:
        tolerance = float(jnp.finfo(dtype).eps) ** 0.5

    def equations(x: jax.Array) -> jax.Array:
        return F(x, theta)

    def newton(f: Callable[[jax.Array], jax.Array], start: jax.Array):
        def keep_going(state):
            step, _, step_size, scale = state
            return (step < max_steps) & (step_size > tolerance * scale)

        def newton_step(state):
            step, x, _, _ = state
            update = jnp.linalg.solve(jax.jacfwd(f)(x), f(x))
            x = x - update
            return step + 1, x, jnp.linalg.norm(update), 1.0 + jnp.linalg.norm(x)

        inf = jnp.asarray(jnp.inf, dtype)
        state = (0, start, inf, jnp.asarray(1.0, dtype))
        _, x, step_size, scale = jax.lax.while_loop(keep_going, newton_step, state)
        # The relative size of the last step (a float: custom_root cannot carry a
        # boolean auxiliary output through differentiation).
        return x, step_size / scale

    def tangent_solve(g: Callable[[jax.Array], jax.Array], y: jax.Array) -> jax.Array:
        # g is the linearisation v -> dF/dx v at the solution; solve g(v) = y.
        return jnp.linalg.solve(jax.jacfwd(g)(y), y)

    x, last_step = jax.lax.custom_root(
        equations, x0, newton, tangent_solve, has_aux=True
    )
    converged = last_step <= tolerance
    known = concrete(converged)
    if known is not None and not known:
        raise ValueError(
            f"Newton's method did not converge in {max_steps} steps: start closer to "
            "the equilibrium (x0) or allow more max_steps"
        )
    return jnp.where(converged, x, jnp.nan)


class Shift(NamedTuple):
    """What ``equilibrium_shift`` returns."""

    x: jax.Array
    predicted: jax.Array


def equilibrium_shift(
    F: EquilibriumSystem, x: ArrayLike, theta: ArrayLike, *, index: int, delta: float
) -> Shift:
    """The equilibrium after ``theta[index] += delta``, and its first-order prediction.

    ``x`` is the response of ``solve_equilibrium`` started from the old equilibrium;
    ``predicted`` is ``x* + dx*/dtheta_index delta`` (``comparative_statics``). The two
    agree exactly when F is linear in x and theta, and up to ``O(delta^2)`` otherwise.

    Example (Mankiw's IS-LM: 10 more government spending raises Y by 2 x 10):

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> F = lambda x, theta: islm_residual(model, x, theta)
    >>> theta = jnp.array([100.0, 100.0, 1000.0, 2.0])
    >>> x = jnp.array([1100.0, 6.0])
    >>> shift = equilibrium_shift(F, x, theta, index=0, delta=10.0)
    >>> [[round(float(v), 3) for v in values] for values in shift]
    [[1120.0, 6.2], [1120.0, 6.2]]
    """
    x = _vector("x", x)
    theta = _vector("theta", theta)
    if not -theta.shape[0] <= index < theta.shape[0]:
        raise ValueError(
            f"index must be in -{theta.shape[0]}..{theta.shape[0] - 1} (theta has "
            f"{theta.shape[0]} parameters), got {index}"
        )
    moved = solve_equilibrium(F, x, theta.at[index].add(delta))
    return Shift(moved, x + comparative_statics(F, x, theta)[:, index] * delta)


class ISLM(NamedTuple):
    """An IS-LM economy, as its behavioural functions (all quantities real).

    Attributes:
        consumption: C(Y - T), consumption as a function of disposable income.
        investment: I(r), investment as a function of the interest rate.
        money_demand: L(Y, r), real money demand.
    """

    consumption: Callable[[jax.Array], jax.Array]
    investment: Callable[[jax.Array], jax.Array]
    money_demand: Callable[[jax.Array, jax.Array], jax.Array]


def linear_islm(
    *, c0: float, c: float, i0: float, b: float, k: float, h: float
) -> ISLM:
    """The textbook linear IS-LM model.

    C = c0 + c (Y - T),  I = i0 - b r,  L = k Y - h r. Its aggregate demand is
    Y(P) = (h A + b M / P) / D with A = c0 - c T + i0 + G and D = h (1 - c) + b k, so
    dY/dP = -(b / D) M / P^2 (``linear_islm_closed_form``). The slopes b, k, h must be
    >= 0 (checked when concrete; traced settings, under ``jit`` or ``vmap``, are not).

    Example (Mankiw, *Macroeconomics*, ch. 11, problem 3):

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> float(model.consumption(jnp.asarray(1000.0)))
    950.0
    """
    for name, value in (("b", b), ("k", k), ("h", h)):
        check_nonnegative(name, value)
    return ISLM(
        consumption=lambda disposable: c0 + c * disposable,
        investment=lambda r: i0 - b * r,
        money_demand=lambda Y, r: k * Y - h * r,
    )


def linear_islm_closed_form(
    *,
    c0: ArrayLike,
    c: ArrayLike,
    i0: ArrayLike,
    b: ArrayLike,
    k: ArrayLike,
    h: ArrayLike,
    G: ArrayLike,
    T: ArrayLike,
    M: ArrayLike,
    P: ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """Equilibrium x* = (Y, r) and dx*/d(G, T, M, P) of ``linear_islm``, by hand.

    Solving the two linear equations by Cramer's rule (Mankiw, *Macroeconomics*,
    ch. 11; Varian, *Microeconomic Analysis*, ch. 26),

        Y = (h A + b M / P) / D,   r = (k Y - M / P) / h,
        A = c0 - c T + i0 + G,     D = h (1 - c) + b k,

    and differentiating: dY/d(G, T, M, P) = (h, -c h, b / P, -b M / P^2) / D (the
    fiscal multiplier h / D, the money multiplier b / (P D)) and dr = (k dY - d(M /
    P)) / h. Returns ``(x, dx)`` with shapes ``(2,)`` and ``(2, 4)``, in the order of
    ``ISLM_VARIABLES`` and ``ISLM_PARAMETERS``; arguments broadcast over leading axes
    (``(..., 2)`` and ``(..., 2, 4)``). Needs h > 0 and P > 0, checked when concrete.

    Example (Mankiw, ch. 11, problem 3: Y = 1100, r = 6, dY/dG = 2, dY/dP = -125):

    >>> x, dx = linear_islm_closed_form(
    ...     c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0,
    ...     G=100.0, T=100.0, M=1000.0, P=2.0)
    >>> x.tolist(), dx[0].tolist()
    ([1100.0, 6.0], [2.0, -1.5, 0.25, -125.0])
    """
    check_positive("h", h)
    check_positive("P", P)
    c0, c, i0, b, k, h, G, T, M, P = _broadcast_floats(c0, c, i0, b, k, h, G, T, M, P)
    D = h * (1 - c) + b * k
    A = c0 - c * T + i0 + G
    Y = (h * A + b * M / P) / D
    r = (k * Y - M / P) / h
    zero = jnp.zeros_like(P)
    dY = jnp.stack([h, -c * h, b / P, -b * M / P**2], axis=-1) / D[..., None]
    d_money = jnp.stack([zero, zero, 1 / P, -M / P**2], axis=-1)
    dr = (k[..., None] * dY - d_money) / h[..., None]
    return jnp.stack([Y, r], axis=-1), jnp.stack([dY, dr], axis=-2)


def _broadcast_floats(*values: ArrayLike) -> list[jax.Array]:
    """Real floating arrays of one dtype and one (broadcast) shape."""
    arrays = [jnp.asarray(v) for v in values]
    dtype = jnp.result_type(*arrays, float)
    return jnp.broadcast_arrays(*(a.astype(dtype) for a in arrays))


def semilog_islm(
    *, c0: float, c: float, i0: float, b: float, k: float, eta: float
) -> ISLM:
    """IS-LM with semi-log (Cagan) money demand: ln L = ln k + ln Y - eta r.

    Consumption and investment are linear as in ``linear_islm``; real money demand is
    L = k Y exp(-eta r), with income elasticity 1 and interest semi-elasticity -eta.
    Along the equilibrium, dY/dP = -b Y / (P (b + (1 - c) eta Y)).

    Needs k > 0 and eta >= 0 (checked when concrete).

    Example:

    >>> model = semilog_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, eta=0.1)
    >>> round(float(model.money_demand(jnp.asarray(1000.0), jnp.asarray(5.0))), 2)
    606.53
    """
    check_positive("k", k)
    check_nonnegative("eta", eta)
    return ISLM(
        consumption=lambda disposable: c0 + c * disposable,
        investment=lambda r: i0 - b * r,
        money_demand=lambda Y, r: k * Y * jnp.exp(-eta * r),
    )


def semilog_ad_slope(
    Y: ArrayLike, P: ArrayLike, *, c: ArrayLike, b: ArrayLike, eta: ArrayLike
) -> jax.Array:
    """dY/dP along the aggregate demand curve of ``semilog_islm``, at output Y.

    Differentiating IS, Y (1 - c) = A - b r, and LM, ln(M / P) = ln k + ln Y - eta r,
    in P and eliminating dr/dP (Cramer's rule):

        dY/dP = -b Y / (P (b + (1 - c) eta Y)).

    Y is the equilibrium output at P (e.g. from ``aggregate_demand``); P > 0, checked
    when concrete. Arguments broadcast.

    Example (a vertical LM, eta = 0, gives the quantity theory's -Y / P):

    >>> float(semilog_ad_slope(1000.0, 2.0, c=0.75, b=25.0, eta=0.0))
    -500.0
    """
    check_positive("P", P)
    Y, P, c, b, eta = _broadcast_floats(Y, P, c, b, eta)
    return -b * Y / (P * (b + (1 - c) * eta * Y))


def islm_residual(model: ISLM, x: ArrayLike, theta: ArrayLike) -> jax.Array:
    """The IS-LM equilibrium conditions F(x, theta), zero at equilibrium.

    x = (Y, r) and theta = (G, T, M, P) (see ``ISLM_VARIABLES``, ``ISLM_PARAMETERS``):

        IS:  Y - C(Y - T) - I(r) - G = 0   (goods market)
        LM:  M / P - L(Y, r) = 0           (money market)

    Example:

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> theta = jnp.array([100.0, 100.0, 1000.0, 2.0])
    >>> [float(v) for v in islm_residual(model, jnp.array([1100.0, 6.0]), theta)]
    [0.0, 0.0]
    """
    x = jnp.asarray(x)
    theta = jnp.asarray(theta)
    check_shape("x = (Y, r)", x, (2,))
    check_shape("theta = (G, T, M, P)", theta, (4,))
    Y, r = x[0], x[1]
    G, T, M, P = theta[0], theta[1], theta[2], theta[3]
    goods = Y - model.consumption(Y - T) - model.investment(r) - G
    money = M / P - model.money_demand(Y, r)
    return jnp.stack([goods, money])


def aggregate_demand(
    model: ISLM,
    P: ArrayLike,
    *,
    G: float,
    T: float,
    M: float,
    x0: ArrayLike,
) -> jax.Array:
    """Output on the aggregate demand curve, Y(P): the IS-LM equilibrium at each P.

    Each price level is solved with ``solve_equilibrium`` from ``x0 = (Y, r)``, so
    ``jax.grad`` gives the slope dY/dP by the implicit function theorem. ``P`` may have
    any shape; the result has the same shape. P > 0 is checked when concrete.

    Example (Mankiw: Y = 850 + 500 / P):

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> ad = lambda P: aggregate_demand(model, P, G=100.0, T=100.0, M=1000.0, x0=[0, 0])
    >>> round(float(ad(4.0)), 3), round(float(jax.grad(ad)(2.0)), 3)
    (975.0, -125.0)
    """
    check_positive("P", P)
    P = as_real_float("P", P)
    x0 = as_real_float("x0", x0).astype(P.dtype)
    check_shape("x0 = (Y, r)", x0, (2,))

    def output(price_level: jax.Array) -> jax.Array:
        theta = jnp.stack([jnp.asarray(v, P.dtype) for v in (G, T, M)] + [price_level])
        return solve_equilibrium(partial(islm_residual, model), x0, theta)[0]

    if P.ndim == 0:
        return output(P)
    return jax.vmap(output)(P.reshape(-1)).reshape(P.shape)


def islm_curve(
    model: ISLM,
    r: ArrayLike,
    theta: ArrayLike,
    *,
    market: Literal["IS", "LM"],
    Y0: ArrayLike,
) -> jax.Array:
    """Output Y on the IS curve (goods market) or the LM curve (money market) at r.

    Each interest rate solves the one equation of ``market`` in ``islm_residual`` for
    Y, by ``solve_equilibrium`` from ``Y0``: the IS curve Y = C(Y - T) + I(r) + G and
    the LM curve M / P = L(Y, r) of Mankiw, *Macroeconomics*, ch. 11. Their crossing is
    the equilibrium. ``r`` is a vector ``(k,)``; the result has its shape.

    Example (Mankiw, ch. 11, problem 3: IS is Y = 1700 - 100 r, LM is Y = 500 + 100 r):

    >>> model = linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)
    >>> theta = jnp.array([100.0, 100.0, 1000.0, 2.0])
    >>> r = jnp.array([5.0, 6.0])
    >>> [round(float(Y), 2) for Y in islm_curve(model, r, theta, market="IS", Y0=1e3)]
    [1200.0, 1100.0]
    >>> [round(float(Y), 2) for Y in islm_curve(model, r, theta, market="LM", Y0=1e3)]
    [1000.0, 1100.0]
    """
    check_choice("market", market, ("IS", "LM"))
    r = _vector("r", r)
    theta = as_real_float("theta", theta)
    check_shape("theta = (G, T, M, P)", theta, (4,))
    equation = ("IS", "LM").index(market)
    start = jnp.reshape(as_real_float("Y0", Y0), (1,)).astype(r.dtype)

    def solve(rate: jax.Array) -> jax.Array:
        def F(Y: jax.Array, theta: jax.Array) -> jax.Array:
            residual = islm_residual(model, jnp.stack([Y[0], rate]), theta)
            return residual[equation : equation + 1]

        return solve_equilibrium(F, start, theta)[0]

    return jax.vmap(solve)(r)

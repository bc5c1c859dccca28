"""Rational-quadratic spline couplings (Durkan et al. 2019, "Neural Spline Flows").

A monotonic rational-quadratic spline maps ``[-B, B]`` onto itself through ``K + 1``
knots ``(x_k, y_k)`` with positive derivatives ``d_k`` there, and is the identity
outside (linear tails, ``d_0 = d_K = 1``, so the map is continuously differentiable).
In bin ``k``, with width ``w = x_{k+1} - x_k``, height ``h = y_{k+1} - y_k``, slope
``s = h / w`` and ``xi = (x - x_k) / w`` in ``[0, 1]`` (the paper's equations 4-6):

- forward:  ``y = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + g xi (1 - xi))`` with
  ``g = d_{k+1} + d_k - 2 s``;
- derivative: ``dy/dx = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2) /
  (s + g xi (1 - xi))^2 > 0``;
- inverse: ``xi`` is the root in ``[0, 1]`` of a quadratic, ``xi = 2 c / (-b -
  sqrt(b^2 - 4 a c))`` with ``a = h (s - d_k) + (y - y_k) g``,
  ``b = h d_k - (y - y_k) g`` and ``c = -s (y - y_k)``.

All three are closed forms, so ``jit``, ``vmap``, ``grad`` and ``jvp`` apply as they
are. In a coupling the network gives, per transformed entry, ``3K - 1`` numbers:
``K`` bin widths and ``K`` heights through a softmax (each at least a ``1e-3``
fraction of ``2B``) and ``K - 1`` inner derivatives through a softplus (at least
``1e-3``); zeros give evenly spaced knots and unit derivatives, the identity.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.flows.bijection import Bijection
from chainlab.flows.conditioners import Conditioner
from chainlab.flows.coupling import masked_coupling
from chainlab.validation import check_at_least, check_positive

__all__ = ["rational_quadratic_spline", "spline_coupling", "spline_outputs"]

MIN_BIN = 1e-3  # smallest bin width and height, as a fraction of the interval
MIN_DERIVATIVE = 1e-3
# softplus(raw + _UNIT) = 1 - MIN_DERIVATIVE at raw = 0: new splines are the identity.
_UNIT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def rational_quadratic_spline(
    x: ArrayLike,
    x_knots: ArrayLike,
    y_knots: ArrayLike,
    derivatives: ArrayLike,
    *,
    inverse: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The monotonic rational-quadratic spline through the knots, entry by entry.

    Args:
      x: points ``(...)`` (the spline's outputs when ``inverse``).
      x_knots: increasing knot abscissae ``(..., K + 1)``; the spline acts on
        ``[x_knots[..., 0], x_knots[..., -1]]`` and is the identity outside.
      y_knots: increasing knot ordinates ``(..., K + 1)`` with the same two ends.
      derivatives: positive derivatives at the knots ``(..., K + 1)``.
      inverse: evaluate the inverse spline instead.

    Returns:
      ``(y, log|dy/dx|)``, each of ``x``'s shape; with ``inverse``, ``(x, log|dx/dy|)``
      for the given ``y``.

    Example:
      >>> import jax.numpy as jnp
      >>> knots = jnp.array([-1.0, 0.0, 1.0])
      >>> y, logd = rational_quadratic_spline(
      ...     jnp.array([-2.0, 0.5]), knots, jnp.array([-1.0, -0.5, 1.0]),
      ...     jnp.ones(3))
      >>> [round(v, 4) for v in y.tolist()], round(float(logd[0]), 4)  # tail: identity
      ([-2.0, 0.25], 0.0)
      >>> x, _ = rational_quadratic_spline(y, knots, jnp.array([-1.0, -0.5, 1.0]),
      ...                                  jnp.ones(3), inverse=True)
      >>> [round(v, 4) for v in x.tolist()]
      [-2.0, 0.5]
    """
    x = jnp.asarray(x)
    given = [np.shape(a) for a in (x_knots, y_knots, derivatives)]
    if len(set(given)) > 1 or not given[0] or given[0][-1] < 2:
        raise ValueError(
            "x_knots, y_knots and derivatives must share one shape (..., K + 1) with "
            f"K >= 1, got {', '.join(map(str, given))}"
        )
    knot_shape = (*x.shape, given[0][-1])
    x_knots, y_knots, derivatives = (
        jnp.broadcast_to(jnp.asarray(a, x.dtype), knot_shape)
        for a in (x_knots, y_knots, derivatives)
    )
    source = y_knots if inverse else x_knots
    low, high = source[..., 0], source[..., -1]
    inside = (x >= low) & (x <= high)
    # In the tails the spline's branch runs at ``low`` (finite, then discarded); not a
    # clip, whose derivative at the interval's ends would be halved.
    v = jnp.where(inside, x, low)
    # v's bin as a one-hot (..., K): at or above its left knot, below its right one
    # (the last bin closed). Selecting by a product, not a gather, keeps the backward
    # pass elementwise, with no scatter.
    above = v[..., None] >= source[..., :-1]
    below = jnp.concatenate(
        [v[..., None] < source[..., 1:-1], jnp.ones_like(above[..., :1])], axis=-1
    )
    one_hot = (above & below).astype(x.dtype)

    def pick(table):
        return jnp.sum(one_hot * table, axis=-1)

    x_k, y_k, d_k = (pick(a[..., :-1]) for a in (x_knots, y_knots, derivatives))
    x_k1, y_k1, d_k1 = (pick(a[..., 1:]) for a in (x_knots, y_knots, derivatives))
    width, height = x_k1 - x_k, y_k1 - y_k
    slope = height / width
    g = d_k1 + d_k - 2 * slope
    if inverse:
        dy = v - y_k
        a = height * (slope - d_k) + dy * g
        b = height * d_k - dy * g
        c = -slope * dy
        root = jnp.sqrt(jnp.maximum(b**2 - 4 * a * c, 0.0))
        xi = jnp.clip(2 * c / (-b - root), 0.0, 1.0)
        image = x_k + xi * width
    else:
        xi = (v - x_k) / width
        image = y_k + height * (slope * xi**2 + d_k * xi * (1 - xi)) / (
            slope + g * xi * (1 - xi)
        )
    mix = xi * (1 - xi)
    numerator = d_k1 * xi**2 + 2 * slope * mix + d_k * (1 - xi) ** 2
    derivative = numerator * (slope / (slope + g * mix)) ** 2
    log_derivative = jnp.log(derivative)
    if inverse:
        log_derivative = -log_derivative
    return jnp.where(inside, image, x), jnp.where(inside, log_derivative, 0.0)


def spline_outputs(bins: int) -> int:
    """Numbers per entry a spline coupling's conditioner gives: ``3 * bins - 1``.

    Example:
      >>> spline_outputs(8)
      23
    """
    check_at_least("bins", bins, 1)
    return 3 * bins - 1


def _knots(raw: jax.Array, bins: int, bound: float) -> jax.Array:
    """Increasing knots on ``[-bound, bound]`` from ``bins`` unconstrained numbers."""
    fractions = MIN_BIN + (1 - MIN_BIN * bins) * jax.nn.softmax(raw, axis=-1)
    inner = jnp.cumsum(fractions[..., :-1], axis=-1)
    ends = jnp.zeros((*raw.shape[:-1], 1), raw.dtype)
    unit = jnp.concatenate([ends, inner, ends + 1], axis=-1)
    return bound * (2 * unit - 1)


def spline_transform(
    raw: jax.Array, x: jax.Array, *, bins: int, bound: float, inverse: bool
) -> tuple[jax.Array, jax.Array]:
    """The spline of each entry of ``x`` from its ``3 bins - 1`` numbers in ``raw``.

    ``raw`` is ``(*x.shape, 3 bins - 1)``: widths, heights, inner derivatives.
    Returns ``(image, per-entry log-derivative)`` as :func:`rational_quadratic_spline`.
    """
    x_knots = _knots(raw[..., :bins], bins, bound)
    y_knots = _knots(raw[..., bins : 2 * bins], bins, bound)
    inner = MIN_DERIVATIVE + jax.nn.softplus(raw[..., 2 * bins :] + _UNIT)
    ones = jnp.ones((*raw.shape[:-1], 1), raw.dtype)
    derivatives = jnp.concatenate([ones, inner, ones], axis=-1)
    return rational_quadratic_spline(x, x_knots, y_knots, derivatives, inverse=inverse)


def check_spline(bins: int, bound: float) -> None:
    """Refuse a spline without bins or with an empty interval."""
    check_at_least("bins", bins, 1)
    check_positive("bound", bound)


def spline_coupling(
    mask: ArrayLike, conditioner: Conditioner, *, bins: int = 8, bound: float = 4.0
) -> Bijection:
    """A rational-quadratic spline coupling on events of shape ``mask.shape``.

    Each entry where ``mask == 0`` goes through its own monotonic spline with
    ``bins`` bins on ``[-bound, bound]`` (identity outside), whose knots the
    conditioner computes from the kept entries ``m * x`` (and the context, if it has
    one); the kept entries pass through. ``log|det dy/dx|`` is the sum of the
    transformed entries' log-derivatives.

    Args:
      mask: 0/1 array of the event shape; 1 marks the entries passed through.
      conditioner: maps ``(n, *event)`` to ``(n, *event, spline_outputs(bins))``, e.g.
        ``mlp_conditioner(dim, hidden, outputs=spline_outputs(bins))``. With a
        ``context_dim > 0`` the coupling is conditional.
      bins: number of bins ``K``.
      bound: half-width ``B`` of the interval the splines act on.

    ``params = {"net": conditioner params}``; a new coupling is the identity. With a
    concrete mask the splines run on the transformed entries only (a traced one, as
    in :func:`~chainlab.flows.scan` over masks, masks them after running on all).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import half_mask, mlp_conditioner
      >>> net = mlp_conditioner(2, (8,), outputs=spline_outputs(4))
      >>> layer = spline_coupling(half_mask(2), net, bins=4, bound=3.0)
      >>> x = jnp.array([[0.5, -1.0]])
      >>> y, logdet = layer.forward(layer.init(jax.random.key(0)), x)
      >>> bool(jnp.allclose(y, x)), bool(jnp.allclose(logdet, 0.0, atol=1e-6))
      (True, True)
    """
    check_spline(bins, bound)

    def transform(params, out, x, inverse):
        del params
        return spline_transform(out, x, bins=bins, bound=bound, inverse=inverse)

    return masked_coupling(
        mask,
        conditioner,
        transform,
        dict,
        outputs=spline_outputs(bins),
        name="spline_coupling",
        pick_entries=True,
    )

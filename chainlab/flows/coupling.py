"""Affine coupling layer (Dinh et al. 2017, "Density estimation using Real NVP").

With a binary mask ``m`` (1: kept, 0: transformed) and a conditioner network that sees
only the kept entries, ``(t, r) = NN(m * x)``, the log-scale ``s = (1 - m) * g(r)`` and
the shift ``t' = (1 - m) * t``. Then

- forward:  ``y = x * exp(s) + t'``,            ``log|det dy/dx| = sum(s)``;
- inverse:  ``x = (y - t') * exp(-s)``,         ``log|det dx/dy| = -sum(s)``.

The Jacobian is triangular after sorting the kept entries first (``m * y = m * x``, so
the inverse recomputes ``s`` and ``t'`` from ``m * y``), with diagonal ``exp(s)``;
hence the log-determinant is a sum and costs one network evaluation.

``g`` maps the raw output to a log-scale, ``g(0) = 0``:

- ``"softplus"`` (the default): ``exp(g(r)) = softplus(r + softplus^-1(1 - f)) + f``
  with the floor ``f = 0.01``: a scale at least ``f`` (``g >= -4.6``), unbounded
  above, with ``dg/dr = 0.63`` at ``r = 0`` (``sigmoid(softplus^-1(1 - f))``);
- ``"tanh"``: ``g(r) = a tanh(r)`` with a learned per-entry bound ``a`` (initially
  1), so each scale stays within ``exp(+-|a|)``.

On two moons under Adam 1e-3 the softplus scale ended lower than the tanh bound
(``benchmarks/flows_ablation.py``: -0.009 and -0.010 nats over two sets of five
seeds; a looser tanh bound, ``a = 3``, was 0.06 nats worse and an unbounded
``g(r) = r`` diverged): a floor below, no ceiling above, and no saturation near the
identity.

A conditional coupling's network also sees a context vector ``c``,
``(t, r) = NN(m * x, c)``: the map, and the density of a flow built from it, depend
on ``c`` while the Jacobian keeps its structure.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection
from chainlab.flows.conditioners import Conditioner
from chainlab.validation import check_choice, concrete

__all__ = ["affine_coupling"]

# transform(params, out, x, inverse) -> (image, per-entry log|d image / d x|), with
# ``out`` the conditioner's (n, *event, outputs) numbers.
Transform = Callable[[Any, jax.Array, jax.Array, bool], tuple[jax.Array, jax.Array]]


SCALES = ("softplus", "tanh")
SCALE_FLOOR = 0.01  # the smallest scale of the softplus parametrisation
# sigmoid(c) for the c with softplus(c) = 1 - SCALE_FLOOR.
_SIGMOID_SHIFT = -math.expm1(-(1.0 - SCALE_FLOOR))
_LINEAR_ABOVE = 30.0  # where softplus(raw + c) - softplus(c) = raw + log sigmoid(c)


def softplus_log_scale(raw: jax.Array) -> jax.Array:
    """``log(softplus(raw + c) + f)`` with ``softplus(c) = 1 - f``, ``f =
    SCALE_FLOOR``: at least ``log f``, exactly zero at ``raw = 0``.

    With ``softplus(raw + c) - softplus(c) = log1p(expm1(raw) sigmoid(c))`` the scale
    is ``1 + log1p(expm1(raw) sigmoid(c))``, which is 1 to the last bit at ``raw =
    0``, so a new coupling is the identity; above ``raw = 30`` the inner term is
    ``raw + log sigmoid(c)`` to float precision (and ``expm1`` would overflow).
    """
    weight = jnp.asarray(_SIGMOID_SHIFT, raw.dtype)
    moderate = jnp.minimum(raw, _LINEAR_ABOVE)
    excess = jnp.where(
        raw > _LINEAR_ABOVE,
        raw + jnp.log(weight),
        jnp.log1p(jnp.expm1(moderate) * weight),
    )
    return jnp.log1p(excess)


def tanh_log_scale(bound: jax.Array, raw: jax.Array) -> jax.Array:
    """``bound * tanh(raw)``: a log-scale within ``+-|bound|``, zero at ``raw = 0``
    (``bound`` broadcasts against ``raw``'s trailing axes)."""
    return bound * jnp.tanh(raw)


def affine_transform(
    log_scale: jax.Array, out: jax.Array, x: jax.Array, inverse: bool
) -> tuple[jax.Array, jax.Array]:
    """Entrywise ``y = x exp(s) + t`` (or its inverse) with the log-scale ``s``.

    ``out[..., 0] = t``; returns the image and the per-entry ``log|dy/dx| = s``
    (``-s`` for the inverse).
    """
    shift = out[..., 0]
    if inverse:
        return (x - shift) * jnp.exp(-log_scale), -log_scale
    return x * jnp.exp(log_scale) + shift, log_scale


def _transformed_entries(values: np.ndarray | None) -> slice | np.ndarray | None:
    """Static indices (a slice when contiguous) of the flattened entries where a
    concrete mask is 0; ``None`` for a traced mask."""
    if values is None:
        return None
    index = np.flatnonzero(values.reshape(-1) == 0)
    if index.size and np.array_equal(index, np.arange(index[0], index[-1] + 1)):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def masked_coupling(
    mask: ArrayLike,
    conditioner: Conditioner,
    transform: Transform,
    extra: Callable[[], dict],
    *,
    outputs: int,
    name: str,
    pick_entries: bool = False,
) -> Bijection:
    """The coupling that applies ``transform`` to the entries where ``mask == 0``.

    ``transform`` gets the conditioner's numbers for ``m * x`` (and the context); the
    kept entries pass through, so the Jacobian is triangular and
    ``log|det| = sum((1 - m) * log|d transform|)``. By default ``transform`` runs on
    every entry and the kept ones are restored by the mask; with ``pick_entries`` and
    a concrete mask it runs on the transformed entries only, picked by static
    indices (``transform`` must then not index ``params`` by entry). ``params =
    {"net": conditioner params, **extra()}``.
    """
    values = concrete(mask)
    if values is not None and not np.all((values == 0) | (values == 1)):
        raise ValueError(f"mask must hold only 0 and 1, got {np.unique(values)}")
    if conditioner.outputs != outputs:
        raise ValueError(
            f"{name} needs a conditioner with outputs={outputs}, "
            f"got {conditioner.outputs}"
        )
    picked = _transformed_entries(values) if pick_entries else None
    mask = jnp.asarray(mask)
    axes = tuple(range(1, 1 + mask.ndim))
    conditional = conditioner.context_dim > 0

    def init(key):
        return {"net": conditioner.init(key), **extra()}

    def _apply(params, x, context, inverse):
        check_event(x, mask.shape, name)
        m = mask[None].astype(x.dtype)
        net_args = (x * m,) if context is None else (x * m, context)
        out = conditioner.apply(params["net"], *net_args)
        if picked is None:
            y, log_derivative = transform(params, out, x, inverse)
            return m * x + (1 - m) * y, jnp.sum((1 - m) * log_derivative, axis=axes)
        flat = jnp.reshape(x, (x.shape[0], -1))
        out = jnp.reshape(out, (*flat.shape, outputs))
        y, log_derivative = transform(params, out[:, picked], flat[:, picked], inverse)
        y = flat.at[:, picked].set(y)
        return jnp.reshape(y, x.shape), jnp.sum(log_derivative, axis=1)

    def forward(params, x, context=None):
        return _apply(params, x, context, False)

    def inverse(params, y, context=None):
        return _apply(params, y, context, True)

    return Bijection(init, forward, inverse, conditional=conditional)


def affine_coupling(
    mask: ArrayLike, conditioner: Conditioner, *, scale: str = "softplus"
) -> Bijection:
    """An affine coupling bijection on events of shape ``mask.shape``.

    Args:
      mask: 0/1 array of the event shape; 1 marks the entries passed through (any
        other value would break the triangular Jacobian: refused when concrete).
      conditioner: maps ``(n, *event)`` to ``(n, *event, 2)``, the shift and the raw
        log-scale of each entry, e.g. :func:`~chainlab.flows.mlp_conditioner` for
        vectors and :func:`~chainlab.flows.conv_conditioner` for images. With a
        ``context_dim > 0`` the coupling is conditional: its functions take the
        context ``(n, context_dim)`` as a third argument and pass it to the network.
      scale: how the raw output becomes a log-scale (see the module): ``"softplus"``
        (``params = {"net": ...}``) or ``"tanh"`` (``params = {"net": ..., "scale":
        a}``, ``a`` initialised to ones: a zero would stop the tanh branch's
        gradient).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import half_mask, mlp_conditioner
      >>> layer = affine_coupling(half_mask(2), mlp_conditioner(2, (8,)))
      >>> params = layer.init(jax.random.key(0))
      >>> y, logdet = layer.forward(params, jnp.array([[0.5, -1.0]]))
      >>> y.tolist(), logdet.tolist()  # a new coupling is the identity
      ([[0.5, -1.0]], [0.0])
    """
    check_choice("scale", scale, SCALES)
    shape = np.shape(mask)

    def transform(params, out, x, inverse):
        raw = out[..., 1]
        if scale == "tanh":
            log_scale = tanh_log_scale(params["scale"][None], raw)
        else:
            log_scale = softplus_log_scale(raw)
        return affine_transform(log_scale, out, x, inverse)

    def extra():
        if scale == "tanh":
            return {"scale": jnp.ones(shape, jnp.result_type(float))}
        return {}

    return masked_coupling(
        mask, conditioner, transform, extra, outputs=2, name="coupling"
    )

"""Affine coupling layer (Dinh et al. 2017, "Density estimation using Real NVP").

With a binary mask ``m`` (1: kept, 0: transformed) and a conditioner network that sees
only the kept entries, ``(t, r) = NN(m * x)``, the bounded log-scale is
``s = (1 - m) * a * tanh(r)`` with a learned per-entry ``a`` and the shift is
``t' = (1 - m) * t``. Then

- forward:  ``y = x * exp(s) + t'``,            ``log|det dy/dx| = sum(s)``;
- inverse:  ``x = (y - t') * exp(-s)``,         ``log|det dx/dy| = -sum(s)``.

The Jacobian is triangular after sorting the kept entries first (``m * y = m * x``, so
the inverse recomputes ``s`` and ``t'`` from ``m * y``), with diagonal ``exp(s)``;
hence the log-determinant is a sum and costs one network evaluation. The ``tanh``
bounds each scale to ``exp(+-|a|)``, which keeps early training stable.

A conditional coupling's network also sees a context vector ``c``,
``(t, r) = NN(m * x, c)``: the map, and the density of a flow built from it, depend
on ``c`` while the Jacobian keeps its structure.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection
from chainlab.flows.conditioners import Conditioner
from chainlab.validation import concrete

__all__ = ["affine_coupling"]

# transform(params, out, x, inverse) -> (image, per-entry log|d image / d x|), with
# ``out`` the conditioner's (n, *event, outputs) numbers.
Transform = Callable[[Any, jax.Array, jax.Array, bool], tuple[jax.Array, jax.Array]]


def affine_transform(
    scale: jax.Array, out: jax.Array, x: jax.Array, inverse: bool
) -> tuple[jax.Array, jax.Array]:
    """Entrywise ``y = x exp(s) + t`` (or its inverse), ``s = scale * tanh(r)``.

    ``out[..., 0] = t`` and ``out[..., 1] = r``; returns the image and the per-entry
    ``log|dy/dx| = s`` (``-s`` for the inverse).
    """
    shift, log_scale = out[..., 0], scale * jnp.tanh(out[..., 1])
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


def affine_coupling(mask: ArrayLike, conditioner: Conditioner) -> Bijection:
    """An affine coupling bijection on events of shape ``mask.shape``.

    Args:
      mask: 0/1 array of the event shape; 1 marks the entries passed through (any
        other value would break the triangular Jacobian: refused when concrete).
      conditioner: maps ``(n, *event)`` to ``(n, *event, 2)``, the shift and the raw
        log-scale of each entry, e.g. :func:`~chainlab.flows.mlp_conditioner` for
        vectors and :func:`~chainlab.flows.conv_conditioner` for images. With a
        ``context_dim > 0`` the coupling is conditional: its functions take the
        context ``(n, context_dim)`` as a third argument and pass it to the network.

    ``params = {"net": conditioner params, "scale": a}``, with ``a`` initialised to
    ones (a zero would stop the gradient of the tanh branch).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import half_mask, mlp_conditioner
      >>> layer = affine_coupling(half_mask(2), mlp_conditioner(2, (8,)))
      >>> params = layer.init(jax.random.key(0))
      >>> y, logdet = layer.forward(params, jnp.array([[0.5, -1.0]]))
      >>> y.tolist(), logdet.tolist()  # a new coupling is the identity
      ([[0.5, -1.0]], [0.0])
    """
    shape = np.shape(mask)

    def transform(params, out, x, inverse):
        return affine_transform(params["scale"][None], out, x, inverse)

    def extra():
        return {"scale": jnp.ones(shape, jnp.result_type(float))}

    return masked_coupling(
        mask, conditioner, transform, extra, outputs=2, name="coupling"
    )

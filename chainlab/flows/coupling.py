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
"""

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection
from chainlab.flows.conditioners import Conditioner
from chainlab.validation import concrete

__all__ = ["affine_coupling"]


def affine_coupling(mask: ArrayLike, conditioner: Conditioner) -> Bijection:
    """An affine coupling bijection on events of shape ``mask.shape``.

    Args:
      mask: 0/1 array of the event shape; 1 marks the entries passed through (any
        other value would break the triangular Jacobian: refused when concrete).
      conditioner: maps ``(n, *event)`` to ``(shift, log_scale)`` of the same shape,
        e.g. :func:`~chainlab.flows.mlp_conditioner` for vectors and
        :func:`~chainlab.flows.conv_conditioner` for images.

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
    values = concrete(mask)
    if values is not None and not np.all((values == 0) | (values == 1)):
        raise ValueError(f"mask must hold only 0 and 1, got {np.unique(values)}")
    mask = jnp.asarray(mask)
    event_ndim = mask.ndim

    def init(key):
        return {
            "net": conditioner.init(key),
            "scale": jnp.ones(mask.shape, jnp.result_type(float)),
        }

    def _shift_and_log_scale(params, kept):
        m = mask[None].astype(kept.dtype)
        shift, raw = conditioner.apply(params["net"], kept * m)
        log_scale = (1 - m) * params["scale"][None] * jnp.tanh(raw)
        return (1 - m) * shift, log_scale

    def _sum_event(a):
        return jnp.sum(a, axis=tuple(range(1, 1 + event_ndim)))

    def forward(params, x):
        check_event(x, mask.shape, "coupling")
        shift, log_scale = _shift_and_log_scale(params, x)
        return x * jnp.exp(log_scale) + shift, _sum_event(log_scale)

    def inverse(params, y):
        check_event(y, mask.shape, "coupling")
        shift, log_scale = _shift_and_log_scale(params, y)
        return (y - shift) * jnp.exp(-log_scale), -_sum_event(log_scale)

    return Bijection(init, forward, inverse)

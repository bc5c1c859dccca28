"""Preprocessing for bounded and discrete data, as bijections with exact log-dets.

Flows are densities on R^d, so bounded or discrete data are first made continuous and
unbounded (Dinh et al. 2017, "Real NVP", section 4.1; Theis et al. 2016, "A note on
the evaluation of generative models"):

- ``dequantize``: integer values ``x`` in ``{0, ..., K-1}`` become ``y = x + u`` with
  ``u ~ U[0, 1)^d``. For any density ``p`` on ``[0, K)^d``, ``-E_u log p(x + u)``
  upper-bounds the code length ``-log P(x)`` of the discrete model
  ``P(x) = int_{[0,1)^d} p(x + u) du`` (Jensen), so NLL of ``y`` is an honest score.
- ``logit``: ``[0, K) -> R``, ``p = alpha + (1 - 2 alpha) y / K``,
  ``z = log p - log(1 - p)`` per entry, with
  ``log|dz/dy| = log((1 - 2 alpha) / K) - log p - log(1 - p)``.
- ``standardize``: ``z = (y - mean) / std`` with ``log|det dz/dy| = -sum log std``.

Composed in front of a flow, their log-dets enter ``log_prob`` like any other layer's,
so the density is reported on the raw data scale.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection
from chainlab.validation import (
    check_finite,
    check_in_range,
    check_positive,
    check_same_shape,
)

__all__ = ["dequantize", "logit", "standardize"]


def _no_params(key: jax.Array) -> dict:
    del key
    return {}


def _sum_event(a: jax.Array) -> jax.Array:
    return jnp.sum(a, axis=tuple(range(1, a.ndim)))


def dequantize(key: jax.Array, x: ArrayLike) -> jax.Array:
    """Uniform dequantization ``x + u``, ``u ~ U[0, 1)`` i.i.d. per entry.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0, 16.0]])
      >>> y = dequantize(jax.random.key(0), x)
      >>> bool(jnp.all((y >= x) & (y < x + 1)))
      True
    """
    x = jnp.asarray(x, jnp.result_type(x, float))
    return x + jax.random.uniform(key, x.shape, x.dtype)


def logit(*, levels: float, alpha: float = 0.05) -> Bijection:
    """The logit transform of data in ``[0, levels)`` to the real line.

    forward: ``p = alpha + (1 - 2 alpha) y / levels``, ``z = logit(p)``,
    ``log|det dz/dy| = sum(log((1 - 2 alpha) / levels) - log p - log(1 - p))``;
    inverse: ``y = (sigmoid(z) - alpha) levels / (1 - 2 alpha)``,
    ``log|det dy/dz| = sum(log(levels / (1 - 2 alpha)) + log s + log(1 - s))`` with
    ``s = sigmoid(z)``. ``alpha`` keeps the image of ``[0, levels]`` inside
    ``[logit(alpha), logit(1 - alpha)]``. Works on any event shape; ``params`` is empty.
    ``levels > 0`` and ``0 <= alpha < 0.5`` are checked when concrete (traced values,
    under ``jit``, are not; see ``chainlab.validation``).

    Example:
      >>> import jax.numpy as jnp
      >>> to_real = logit(levels=17.0, alpha=0.05)
      >>> z, logdet = to_real.forward({}, jnp.array([[8.5]]))
      >>> round(float(z[0, 0]), 4), round(float(logdet[0]), 4)
      (0.0, -1.5523)
    """
    check_finite("levels", levels)
    check_positive("levels", levels)
    check_in_range("alpha", alpha, 0, 0.5)
    width = 1 - 2 * alpha

    def forward(params, y):
        del params
        p = alpha + width * y / levels
        z = jnp.log(p) - jnp.log1p(-p)
        logdet = jnp.log(width / levels) - jnp.log(p) - jnp.log1p(-p)
        return z, _sum_event(logdet)

    def inverse(params, z):
        del params
        y = (jax.nn.sigmoid(z) - alpha) * (levels / width)
        logdet = jnp.log(levels / width) + jax.nn.log_sigmoid(z)
        logdet = logdet + jax.nn.log_sigmoid(-z)
        return y, _sum_event(logdet)

    return Bijection(_no_params, forward, inverse)


def standardize(mean: ArrayLike, std: ArrayLike) -> Bijection:
    """The fixed affine map ``z = (y - mean) / std`` on events of ``mean``'s shape.

    ``log|det dz/dy| = -sum(log std)``; the inverse is ``y = mean + std z``. ``mean``
    and ``std`` are structure (e.g. training-set statistics), not parameters; both
    must be finite and ``std > 0``, checked when concrete (not under ``jit``).

    Example:
      >>> import jax.numpy as jnp
      >>> scale = standardize(jnp.array([1.0, 0.0]), jnp.array([2.0, 0.5]))
      >>> z, logdet = scale.forward({}, jnp.array([[3.0, 1.0]]))
      >>> z.tolist(), float(logdet[0]) == 0.0  # log 2 + log 0.5
      ([[1.0, 2.0]], True)
    """
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    check_same_shape(mean=mean, std=std)
    check_finite("mean", mean)
    check_finite("std", std)
    check_positive("std", std)
    log_std = jnp.sum(jnp.log(std))

    def forward(params, y):
        del params
        check_event(y, mean.shape, "standardize")
        z = (y - mean[None].astype(y.dtype)) / std[None].astype(y.dtype)
        return z, jnp.full(y.shape[:1], -log_std, y.dtype)

    def inverse(params, z):
        del params
        check_event(z, mean.shape, "standardize")
        y = z * std[None].astype(z.dtype) + mean[None].astype(z.dtype)
        return y, jnp.full(z.shape[:1], log_std, z.dtype)

    return Bijection(_no_params, forward, inverse)

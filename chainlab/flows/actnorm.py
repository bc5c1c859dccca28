"""Activation normalisation (Kingma & Dhariwal 2018, "Glow", section 3.1).

A per-channel affine map with data-dependent initialisation. For ``x`` of shape
``(n, *spatial, c)`` with ``S = prod(spatial)`` positions (``S = 1`` for vectors):

- forward:  ``y = (x + b) * exp(s)``,    ``log|det dy/dx| = S * sum(s)``;
- inverse:  ``x = y * exp(-s) - b``,     ``log|det dx/dy| = -S * sum(s)``.

``initialize(params, x)`` sets ``b = -mean(x)`` and ``s = -log(std(x) + eps)`` per
channel, so the outputs on that batch have zero mean and unit variance; ``init`` alone
gives the identity.
"""

import jax.numpy as jnp

from chainlab.flows._util import check_channels, last_axis, sites
from chainlab.flows.bijection import Bijection
from chainlab.validation import check_at_least, check_positive

__all__ = ["actnorm"]


def actnorm(channels: int, *, eps: float = 1e-6) -> Bijection:
    """ActNorm over the last axis, of size ``channels``.

    ``params = {"loc": b, "log_scale": s}``, each ``(channels,)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> norm = actnorm(2)
      >>> x = jnp.array([[0.0, 10.0], [2.0, 14.0]])
      >>> params = norm.initialize(norm.init(jax.random.key(0)), x)
      >>> y, logdet = norm.forward(params, x)
      >>> jnp.round(y, 4).tolist(), round(float(logdet[0]), 4)  # -log(1) - log(2)
      ([[-1.0, -1.0], [1.0, 1.0]], -0.6931)
    """
    check_at_least("channels", channels, 1)
    check_positive("eps", eps)

    def init(key):
        del key
        zeros = jnp.zeros((channels,), jnp.result_type(float))
        return {"loc": zeros, "log_scale": zeros}

    def forward(params, x):
        check_channels(x, channels, "actnorm")
        loc = last_axis(params["loc"], x.ndim)
        scale = jnp.exp(last_axis(params["log_scale"], x.ndim))
        logdet = sites(x) * jnp.sum(params["log_scale"])
        return (x + loc) * scale, jnp.full(x.shape[:1], logdet, x.dtype)

    def inverse(params, y):
        check_channels(y, channels, "actnorm")
        loc = last_axis(params["loc"], y.ndim)
        scale = jnp.exp(-last_axis(params["log_scale"], y.ndim))
        logdet = -sites(y) * jnp.sum(params["log_scale"])
        return y * scale - loc, jnp.full(y.shape[:1], logdet, y.dtype)

    def initialize(params, x):
        check_channels(x, channels, "actnorm")
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        std = jnp.std(x, axis=axes)
        return {
            "loc": (-mean).astype(params["loc"].dtype),
            "log_scale": (-jnp.log(std + eps)).astype(params["log_scale"].dtype),
        }

    return Bijection(init, forward, inverse, initialize)

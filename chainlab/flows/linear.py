"""Invertible linear map in LU form; on images, Glow's invertible 1x1 convolution
(Kingma & Dhariwal 2018, "Glow", section 3.2).

``W = P L (U + diag(exp(s)))`` with a fixed permutation matrix ``P``, a unit lower
triangular ``L`` and a strictly upper triangular ``U``. Applied to the last axis of
``x`` of shape ``(n, *spatial, c)`` with ``S = prod(spatial)`` positions:

- forward:  ``y = W x`` at every position,  ``log|det dy/dx| = S * sum(s)``;
- inverse:  ``x = W^{-1} y`` by two triangular solves, ``log|det dx/dy| = -S * sum(s)``.

The determinant costs ``O(c)`` instead of ``O(c^3)``, and ``W`` is invertible for every
value of the parameters, because ``det W = det P * prod(exp(s)) != 0``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.flows._util import check_channels, check_permutation, sites
from chainlab.flows.bijection import Bijection
from chainlab.validation import check_at_least

__all__ = ["invertible_linear"]


def invertible_linear(
    channels: int, *, permutation: ArrayLike | None = None
) -> Bijection:
    """An LU-parametrised invertible linear map on the last axis (a 1x1 conv on images).

    Args:
      channels: size ``c`` of the last axis.
      permutation: the fixed ``P`` as an index array, ``(P v)_i = v[permutation[i]]``;
        defaults to reversing the channels, so a new layer (``L = I``, ``U = 0``,
        ``s = 0``) swaps the two halves seen by the next coupling.

    ``params = {"lower": (c(c-1)/2,), "upper": (c(c-1)/2,), "log_diag": (c,)}``: the
    strictly triangular entries of ``L`` and ``U`` and the log-diagonal ``s``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> lin = invertible_linear(3)
      >>> params = lin.init(jax.random.key(0))
      >>> y, logdet = lin.forward(params, jnp.array([[1.0, 2.0, 3.0]]))
      >>> y.tolist(), logdet.tolist()
      ([[3.0, 2.0, 1.0]], [0.0])
    """
    check_at_least("channels", channels, 1)
    if permutation is None:
        permutation = np.arange(channels)[::-1].copy()
    check_permutation("permutation", permutation, channels)
    permutation = jnp.asarray(permutation)
    rows_lo, cols_lo = np.tril_indices(channels, -1)
    rows_up, cols_up = np.triu_indices(channels, 1)
    num_off = channels * (channels - 1) // 2

    def init(key):
        del key
        dtype = jnp.result_type(float)
        zeros = jnp.zeros((num_off,), dtype)
        return {
            "lower": zeros,
            "upper": zeros,
            "log_diag": jnp.zeros((channels,), dtype),
        }

    def _factors(params):
        dtype = params["log_diag"].dtype
        lower = jnp.eye(channels, dtype=dtype).at[rows_lo, cols_lo].set(params["lower"])
        upper = jnp.diag(jnp.exp(params["log_diag"]))
        upper = upper.at[rows_up, cols_up].set(params["upper"])
        perm = jnp.eye(channels, dtype=dtype)[permutation]
        return perm, lower, upper

    def weight(params):
        perm, lower, upper = _factors(params)
        return perm @ lower @ upper

    def forward(params, x):
        check_channels(x, channels, "invertible_linear")
        y = jnp.einsum("...j,ij->...i", x, weight(params).astype(x.dtype))
        logdet = sites(x) * jnp.sum(params["log_diag"])
        return y, jnp.full(x.shape[:1], logdet, y.dtype)

    def inverse(params, y):
        check_channels(y, channels, "invertible_linear")
        perm, lower, upper = (f.astype(y.dtype) for f in _factors(params))
        columns = jnp.reshape(y, (-1, channels)).T  # (c, m): one column per position
        columns = perm.T @ columns
        columns = jax.scipy.linalg.solve_triangular(
            lower, columns, lower=True, unit_diagonal=True
        )
        columns = jax.scipy.linalg.solve_triangular(upper, columns, lower=False)
        x = jnp.reshape(columns.T, y.shape)
        logdet = -sites(y) * jnp.sum(params["log_diag"])
        return x, jnp.full(y.shape[:1], logdet, x.dtype)

    return Bijection(init, forward, inverse)

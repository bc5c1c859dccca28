"""Fixed permutations of the last axis: volume preserving, ``log|det| = 0``.

forward ``y = x[..., perm]``, inverse ``x = y[..., argsort(perm)]``.
"""

import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.flows._util import check_channels, check_permutation
from chainlab.flows.bijection import Bijection
from chainlab.validation import check_at_least

__all__ = ["permutation", "reverse"]


def permutation(perm: ArrayLike) -> Bijection:
    """Permute the last axis by the index array ``perm``; ``params`` is empty.

    ``perm`` must hold each of ``0..len(perm) - 1`` once (checked when concrete).

    Example:
      >>> import jax.numpy as jnp
      >>> swap = permutation(jnp.array([1, 2, 0]))
      >>> y, _ = swap.forward({}, jnp.array([[1.0, 2.0, 3.0]]))
      >>> y.tolist()
      [[2.0, 3.0, 1.0]]
    """
    check_permutation("perm", perm)
    perm = jnp.asarray(perm)
    size = perm.shape[0]
    undo = jnp.argsort(perm)

    def init(key):
        del key
        return {}

    def forward(params, x):
        del params
        check_channels(x, size, "permutation")
        return x[..., perm], jnp.zeros(x.shape[:1], x.dtype)

    def inverse(params, y):
        del params
        check_channels(y, size, "permutation")
        return y[..., undo], jnp.zeros(y.shape[:1], y.dtype)

    return Bijection(init, forward, inverse)


def reverse(dim: int) -> Bijection:
    """Reverse the last axis (of size ``dim``).

    Example:
      >>> import jax.numpy as jnp
      >>> rev = reverse(3)
      >>> rev.forward({}, jnp.array([[1.0, 2.0, 3.0]]))[0].tolist()
      [[3.0, 2.0, 1.0]]
    """
    check_at_least("dim", dim, 1)
    return permutation(jnp.arange(dim)[::-1])

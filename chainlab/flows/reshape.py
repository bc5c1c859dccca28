"""Volume-preserving rearrangements of image events: ``log|det| = 0``.

- ``squeeze``: ``(n, h, w, c) -> (n, h/2, w/2, 4c)``, each 2x2 block of pixels becomes
  the channels of one pixel (Dinh et al. 2017, "Real NVP", section 3.6), so couplings
  with channel masks and 1x1 convolutions can mix neighbouring pixels;
- ``unsqueeze``: its inverse;
- ``reshape``: any change of event shape with the same number of entries.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection

__all__ = ["reshape", "squeeze", "unsqueeze"]


def _zeros(x: jax.Array) -> jax.Array:
    return jnp.zeros(x.shape[:1], x.dtype)


def _no_params(key: jax.Array) -> dict:
    del key
    return {}


def _space_to_depth(x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(
            f"squeeze expects (n, h, w, c) with even h and w, got {x.shape}"
        )
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h // 2, 2, w // 2, 2, c))
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return jnp.reshape(x, (n, h // 2, w // 2, 4 * c))


def _depth_to_space(y: jax.Array) -> jax.Array:
    if y.ndim != 4 or y.shape[3] % 4:
        raise ValueError(
            f"unsqueeze expects (n, h, w, c) with c divisible by 4, got {y.shape}"
        )
    n, h, w, c4 = y.shape
    y = jnp.reshape(y, (n, h, w, 2, 2, c4 // 4))
    y = jnp.transpose(y, (0, 1, 3, 2, 4, 5))
    return jnp.reshape(y, (n, 2 * h, 2 * w, c4 // 4))


def squeeze() -> Bijection:
    """Space-to-depth by a factor 2: ``(n, h, w, c) -> (n, h/2, w/2, 4c)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> sq = squeeze()
      >>> y, _ = sq.forward({}, jnp.arange(4.0).reshape(1, 2, 2, 1))
      >>> y.tolist()
      [[[[0.0, 1.0, 2.0, 3.0]]]]
    """

    def forward(params, x):
        del params
        return _space_to_depth(x), _zeros(x)

    def inverse(params, y):
        del params
        return _depth_to_space(y), _zeros(y)

    return Bijection(_no_params, forward, inverse)


def unsqueeze() -> Bijection:
    """Depth-to-space by a factor 2, the inverse of :func:`squeeze`.

    Example:
      >>> import jax.numpy as jnp
      >>> unsqueeze().forward({}, jnp.ones((1, 2, 2, 8)))[0].shape
      (1, 4, 4, 2)
    """

    def forward(params, x):
        del params
        return _depth_to_space(x), _zeros(x)

    def inverse(params, y):
        del params
        return _space_to_depth(y), _zeros(y)

    return Bijection(_no_params, forward, inverse)


def reshape(in_shape: Sequence[int], out_shape: Sequence[int]) -> Bijection:
    """Reshape events from ``in_shape`` to ``out_shape`` (row-major order).

    Example:
      >>> import jax.numpy as jnp
      >>> flat = reshape((2, 2, 1), (4,))
      >>> flat.forward({}, jnp.ones((3, 2, 2, 1)))[0].shape
      (3, 4)
    """
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if math.prod(in_shape) != math.prod(out_shape):
        raise ValueError(
            f"cannot reshape events {in_shape} to {out_shape}: sizes differ"
        )

    def forward(params, x):
        del params
        check_event(x, in_shape, "reshape")
        return jnp.reshape(x, x.shape[:1] + out_shape), _zeros(x)

    def inverse(params, y):
        del params
        check_event(y, out_shape, "reshape")
        return jnp.reshape(y, y.shape[:1] + in_shape), _zeros(y)

    return Bijection(_no_params, forward, inverse)

"""Flax linen layers built on chainlab's functions.

``Maxout`` wraps :func:`chainlab.activations.maxout`, so its gradient routing (winner
only, ties to the lowest piece) holds inside any Flax model.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype, Initializer

from chainlab.activations import maxout


class Maxout(nn.Module):
    r"""Maxout layer: ``features`` units, each the maximum of ``pieces`` affine maps.

    .. math::
        y_j = \max_{p < k} \Big( \sum_i x_i W_{p i j} + b_{p j} \Big)

    with parameters ``kernel`` ``(pieces, d_in, features)`` and ``bias``
    ``(pieces, features)``. Per unit only the winning piece gets gradient; a tie goes
    to the lowest piece index. The default kernel init draws each piece like a Dense
    layer of fan-in ``d_in`` (LeCun normal, pieces independent). Reference:
    Goodfellow et al., "Maxout Networks", ICML 2013.

    Attributes:
      features: output units ``d_out``.
      pieces: affine pieces per unit ``k`` (2 or more to be nonlinear).
      kernel_init: initializer for ``kernel``.
      bias_init: initializer for ``bias``.
      param_dtype: dtype of the parameters.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.layers import Maxout
      >>> layer = Maxout(features=3, pieces=4)
      >>> params = layer.init(jax.random.key(0), jnp.ones((2, 5)))
      >>> params["params"]["kernel"].shape, layer.apply(params, jnp.ones((2, 5))).shape
      ((4, 5, 3), (2, 3))
    """

    features: int
    pieces: int = 2
    kernel_init: Initializer = nn.initializers.lecun_normal(batch_axis=(0,))
    bias_init: Initializer = nn.initializers.zeros_init()
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` ``(..., d_in)`` -> ``(..., features)``."""
        if self.features < 1 or self.pieces < 1:
            raise ValueError(
                "Maxout needs features >= 1 and pieces >= 1, got "
                f"features={self.features}, pieces={self.pieces}"
            )
        x = jnp.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Maxout input must have shape (..., d_in), got {x.shape}")
        shape = (self.pieces, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = self.param(
            "bias", self.bias_init, (self.pieces, self.features), self.param_dtype
        )
        return maxout(x, kernel, bias)

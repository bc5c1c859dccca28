"""Small Flax networks shared by the experiments.

``MLP`` and ``ConvNet`` are ``flax.linen`` modules, so ``model.apply(params, x)`` is a
pure function of the parameters, ready for ``jax.grad``, ``jax.jacfwd`` and friends.
"""

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Fully connected network ``x -> Dense -> act -> ... -> Dense`` (no final act).

    Example: ``MLP((128, 128, 10))`` maps ``(..., 64)`` digits to 10 logits.
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features[:-1]:
            x = self.activation(nn.Dense(width)(x))
        return nn.Dense(self.features[-1])(x)


class ConvNet(nn.Module):
    """Small convolutional network on flattened images ``(..., h * w * c) -> logits``.

    The input ``(..., h * w * c)`` is reshaped to ``(n, *image_shape)``, then passes
    ``conv 3x3 -> act`` layers, ``features[i]`` channels each ('SAME' padding; the first
    keeps the size, each later one halves it with stride 2), and a ``Dense`` layer on
    the flattened features; the output is ``(..., num_outputs)``. Examples never mix,
    so the Jacobian of one example's logits is zero for every other example. Taking
    flat vectors keeps the interface of :class:`MLP`, so Jacobians ``d logits / d x``
    have the same shape for both.

    Raises ``ValueError`` when the last axis of ``x`` is not ``h * w * c``.

    Example: ``ConvNet((16, 32), 10)`` maps ``(..., 64)`` digits to 10 logits.
    """

    features: Sequence[int]
    num_outputs: int
    image_shape: tuple[int, int, int] = (8, 8, 1)
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size = math.prod(self.image_shape)
        if x.shape[-1] != size:
            raise ValueError(
                f"ConvNet expects flat images of {size} = "
                f"{'x'.join(map(str, self.image_shape))} values on the last axis, "
                f"got shape {x.shape}"
            )
        batch = x.shape[:-1]
        h = x.reshape(-1, *self.image_shape)
        for i, width in enumerate(self.features):
            stride = 1 if i == 0 else 2
            h = self.activation(nn.Conv(width, (3, 3), strides=stride)(h))
        logits = nn.Dense(self.num_outputs)(h.reshape(h.shape[0], -1))
        return logits.reshape(*batch, self.num_outputs)

"""Small Flax networks shared by the experiments.

They are ``flax.linen`` modules, so ``model.apply(params, x)`` is a pure function of the
parameters, ready for ``jax.grad``, ``jax.jacfwd`` and friends.
"""

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

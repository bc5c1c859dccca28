"""Multi-scale split (Dinh et al. 2017, "Real NVP", section 3.6).

``factor_out(inner)`` splits the channels of ``x`` in halves ``(a, b)``, emits ``a``
unchanged as part of the latent and sends ``b`` through ``inner``:

- forward:  ``(a, b) -> (a, inner(b))``,          ``log|det| = log|det J_inner(b)|``;
- inverse:  ``(a, z_b) -> (a, inner^{-1}(z_b))``, ``log|det| = log|det J_inner^{-1}|``.

Nested with squeezes, ``chain(squeeze, steps, factor_out(chain(squeeze, steps, ...,
unsqueeze)), unsqueeze)``, half of the dimensions leave the flow at each scale: deeper
layers work on fewer, coarser variables, which saves compute and acts as a prior that
the fine detail is Gaussian given the coarse structure. The latent keeps the input's
shape, so the base density is still an i.i.d. standard normal over all entries.
"""

import jax.numpy as jnp

from chainlab.flows._util import call
from chainlab.flows.bijection import Bijection

__all__ = ["factor_out"]


def _halves(x):
    c = x.shape[-1]
    if c < 2 or c % 2:
        raise ValueError(
            f"factor_out expects an even number of channels >= 2, got shape {x.shape}"
        )
    return x[..., : c // 2], x[..., c // 2 :]


def factor_out(inner: Bijection) -> Bijection:
    """Pass the first half of the channels through; apply ``inner`` to the second.

    ``inner`` must keep the shape of its input. ``params`` are ``inner``'s; the
    split is conditional when ``inner`` is, and hands it the context.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import reverse
      >>> split = factor_out(reverse(2))
      >>> split.forward({}, jnp.array([[1.0, 2.0, 3.0, 4.0]]))[0].tolist()
      [[1.0, 2.0, 4.0, 3.0]]
    """

    def forward(params, x, context=None):
        a, b = _halves(x)
        zb, logdet = call(inner, inner.forward, params, b, context)
        return jnp.concatenate([a, zb], axis=-1), logdet

    def inverse(params, y, context=None):
        a, zb = _halves(y)
        b, logdet = call(inner, inner.inverse, params, zb, context)
        return jnp.concatenate([a, b], axis=-1), logdet

    def initialize(params, x, context=None):
        return call(inner, inner.initialize, params, _halves(x)[1], context)

    return Bijection(inner.init, forward, inverse, initialize, inner.conditional)

"""A flow: a bijection to a standard normal latent, as a density and a sampler.

For a bijection ``f`` from data to latent and ``p_Z = N(0, I)``, the change of variables
formula (the chain rule for densities) gives

    ``log p_X(x) = log p_Z(f(x)) + log|det J_f(x)|``,

and sampling is ``x = f^{-1}(z)`` with ``z ~ N(0, I)``. A conditional flow's bijection
depends on a context ``c``, ``z = f(x; c)``, which gives the conditional density
``log p(x | c) = log p_Z(f(x; c)) + log|det J_f(x; c)|`` and its sampler.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from chainlab.flows._util import call, check_context, check_event
from chainlab.flows.bijection import Bijection
from chainlab.validation import check_at_least

__all__ = ["Flow", "standard_normal_log_prob", "transformed"]

Params = Any


class Flow(NamedTuple):
    """A normalizing flow as pure functions of its ``params``.

    Each function but ``init`` takes an optional ``context``: for a conditional flow
    (``context_dim > 0``) an ``(n, context_dim)`` array, or one ``(context_dim,)``
    vector shared by the batch; an unconditional flow refuses one.

    Attributes:
      init: ``init(key) -> params`` (only trainable floating-point arrays).
      forward: ``forward(params, x, context=None) -> (z, log|det dz/dx|)``, x
        ``(n, *event)``.
      inverse: ``inverse(params, z, context=None) -> (x, log|det dx/dz|)``.
      log_prob: ``log_prob(params, x, context=None) -> (n,)``,
        ``log N(f(x); 0, I) + log|det J_f|``.
      sample: ``sample(params, key, n, context=None) -> (n, *event)``, ``f^{-1}(z)``,
        ``z ~ N(0, I)``.
      initialize: ``initialize(params, x, context=None) -> params``, data-dependent
        initialisation (ActNorm) from a batch; the identity for flows without it.
      context_dim: size of the context vector (0: unconditional).
    """

    init: Callable[[jax.Array], Params]
    forward: Callable[..., tuple[jax.Array, jax.Array]]
    inverse: Callable[..., tuple[jax.Array, jax.Array]]
    log_prob: Callable[..., jax.Array]
    sample: Callable[..., jax.Array]
    initialize: Callable[..., Params]
    context_dim: int = 0


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over all axes but the first: ``(n, ...) -> (n,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(standard_normal_log_prob(jnp.zeros((1, 2)))[0]), 4)
      -1.8379
    """
    axes = tuple(range(1, z.ndim))
    size = math.prod(z.shape[1:])
    return -0.5 * jnp.sum(z**2, axis=axes) - 0.5 * size * math.log(2 * math.pi)


def transformed(
    bijection: Bijection, event_shape: Sequence[int], *, context_dim: int = 0
) -> Flow:
    """The flow whose latent is ``bijection(x)`` under a standard normal base.

    Args:
      bijection: maps data events of ``event_shape`` to latents of the same size.
      event_shape: shape of one data point, e.g. ``(2,)`` or ``(8, 8, 1)``.
      context_dim: size of the context vector of a conditional ``bijection``; 0 (the
        default) for an unconditional one.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import standardize
      >>> flow = transformed(standardize(jnp.zeros(1), jnp.full(1, 2.0)), (1,))
      >>> round(float(flow.log_prob({}, jnp.zeros((1, 1)))[0]), 4)  # log N(0; 0, 4)
      -1.6121
    """
    event_shape = tuple(event_shape)
    check_at_least("context_dim", context_dim, 0)
    if bijection.conditional != (context_dim > 0):
        kind = "conditional" if bijection.conditional else "unconditional"
        raise ValueError(
            f"the bijection is {kind}: context_dim must be "
            f"{'> 0' if bijection.conditional else '0'}, got {context_dim}"
        )

    def _apply(fn, params, x, context):
        check_event(x, event_shape, "flow")
        context = check_context(context, x.shape[0], context_dim, "flow")
        if context is not None:
            context = context.astype(x.dtype)
        return call(bijection, fn, params, x, context)

    def forward(params, x, context=None):
        return _apply(bijection.forward, params, x, context)

    def inverse(params, z, context=None):
        return _apply(bijection.inverse, params, z, context)

    def log_prob(params, x, context=None):
        z, logdet = forward(params, x, context)
        return standard_normal_log_prob(z) + logdet

    def sample(params, key, n, context=None):
        dtype = jax.tree.leaves(params)[0].dtype if jax.tree.leaves(params) else None
        z = jax.random.normal(key, (n, *event_shape), dtype or jnp.result_type(float))
        return inverse(params, z, context)[0]

    def initialize(params, x, context=None):
        return _apply(bijection.initialize, params, x, context)

    # Jitted, the random draws of every layer compile as one program: a Glow's init
    # compiles in about half the time that layer-by-layer eager calls take.
    init = jax.jit(bijection.init)
    return Flow(init, forward, inverse, log_prob, sample, initialize, context_dim)

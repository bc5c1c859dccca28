"""A flow: a bijection to a standard normal latent, as a density and a sampler.

For a bijection ``f`` from data to latent and ``p_Z = N(0, I)``, the change of variables
formula (the chain rule for densities) gives

    ``log p_X(x) = log p_Z(f(x)) + log|det J_f(x)|``,

and sampling is ``x = f^{-1}(z)`` with ``z ~ N(0, I)``.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from chainlab.flows._util import check_event
from chainlab.flows.bijection import Bijection

__all__ = ["Flow", "standard_normal_log_prob", "transformed"]

Params = Any


class Flow(NamedTuple):
    """A normalizing flow as pure functions of its ``params``.

    Attributes:
      init: ``init(key) -> params`` (only trainable floating-point arrays).
      forward: ``forward(params, x) -> (z, log|det dz/dx|)``, x ``(n, *event)``.
      inverse: ``inverse(params, z) -> (x, log|det dx/dz|)``.
      log_prob: ``log_prob(params, x) -> (n,)``, ``log N(f(x); 0, I) + log|det J_f|``.
      sample: ``sample(params, key, n) -> (n, *event)``, ``f^{-1}(z)``, ``z ~ N(0, I)``.
      initialize: ``initialize(params, x) -> params``, data-dependent initialisation
        (ActNorm) from a batch; the identity for flows without it.
    """

    init: Callable[[jax.Array], Params]
    forward: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    inverse: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    log_prob: Callable[[Params, jax.Array], jax.Array]
    sample: Callable[[Params, jax.Array, int], jax.Array]
    initialize: Callable[[Params, jax.Array], Params]


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


def transformed(bijection: Bijection, event_shape: Sequence[int]) -> Flow:
    """The flow whose latent is ``bijection(x)`` under a standard normal base.

    Args:
      bijection: maps data events of ``event_shape`` to latents of the same size.
      event_shape: shape of one data point, e.g. ``(2,)`` or ``(8, 8, 1)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import standardize
      >>> flow = transformed(standardize(jnp.zeros(1), jnp.full(1, 2.0)), (1,))
      >>> round(float(flow.log_prob({}, jnp.zeros((1, 1)))[0]), 4)  # log N(0; 0, 4)
      -1.6121
    """
    event_shape = tuple(event_shape)

    def forward(params, x):
        check_event(x, event_shape, "flow")
        return bijection.forward(params, x)

    def inverse(params, z):
        check_event(z, event_shape, "flow")
        return bijection.inverse(params, z)

    def log_prob(params, x):
        z, logdet = forward(params, x)
        return standard_normal_log_prob(z) + logdet

    def sample(params, key, n):
        dtype = jax.tree.leaves(params)[0].dtype if jax.tree.leaves(params) else None
        z = jax.random.normal(key, (n, *event_shape), dtype or jnp.result_type(float))
        return bijection.inverse(params, z)[0]

    def initialize(params, x):
        check_event(x, event_shape, "flow")
        return bijection.initialize(params, x)

    # Jitted, the random draws of every layer compile as one program: a Glow's init
    # compiles in about half the time that layer-by-layer eager calls take.
    return Flow(jax.jit(bijection.init), forward, inverse, log_prob, sample, initialize)

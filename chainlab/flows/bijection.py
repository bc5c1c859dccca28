"""Bijections as pure functions, and their composition.

A bijection is four pure functions in a NamedTuple, in the style of optax's
``GradientTransformation``:

- ``init(key) -> params``: the trainable floating-point arrays (a pytree);
- ``forward(params, x) -> (y, logdet)`` with ``logdet = log|det dy/dx|``;
- ``inverse(params, y) -> (x, logdet)`` with ``logdet = log|det dx/dy|``;
- ``initialize(params, x) -> params``: data-dependent initialisation from a batch
  (ActNorm); the identity for every other bijection;
- ``conditional``: whether the three functions take a third argument ``context``, an
  ``(n, context_dim)`` array that a conditioner network sees beside its input, so the
  map (and the flow's density) depends on it: ``forward(params, x, context)``.

Arrays carry exactly one batch axis in front: ``x`` has shape ``(n, *event_shape)`` and
``logdet`` has shape ``(n,)``, the log-determinant of the map on one event. Fixed
structure (masks, permutations, sizes) is closed over by the functions, never stored in
``params``, so any update of ``params`` keeps the map invertible.

Composition is the chain rule: for ``f = f_K o ... o f_1``,
``log|det J_f(x)| = sum_k log|det J_{f_k}(x_{k-1})|`` with ``x_k = f_k(x_{k-1})``.
A composition is conditional when any of its parts is, and hands the context to those
parts only, so unconditional bijections keep their two-argument functions.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from chainlab.flows._util import call

__all__ = ["Bijection", "chain", "scan"]

Params = Any


def _keep(params: Params, x: jax.Array, context: jax.Array | None = None) -> Params:
    del x, context
    return params


class Bijection(NamedTuple):
    """An invertible map with its log-determinant, as pure functions.

    Attributes:
      init: ``init(key) -> params``.
      forward: ``forward(params, x) -> (y, log|det dy/dx|)``, x ``(n, *event)``.
      inverse: ``inverse(params, y) -> (x, log|det dx/dy|)``.
      initialize: ``initialize(params, x) -> params``, data-dependent initialisation
        from a batch ``x`` (the identity unless the bijection has one, as ActNorm).
      conditional: if true, ``forward``, ``inverse`` and ``initialize`` take a third
        argument, the context ``(n, context_dim)``.
    """

    init: Callable[[jax.Array], Params]
    forward: Callable[..., tuple[jax.Array, jax.Array]]
    inverse: Callable[..., tuple[jax.Array, jax.Array]]
    initialize: Callable[..., Params] = _keep
    conditional: bool = False


def chain(*bijections: Bijection) -> Bijection:
    """The composition ``f_K o ... o f_1`` of ``chain(f_1, ..., f_K)``.

    forward: ``x_k = f_k(x_{k-1})``, ``logdet = sum_k log|det J_{f_k}(x_{k-1})|``;
    inverse: applies the inverses from last to first, summing their log-dets.
    ``params`` is a tuple with one entry per bijection.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import chain, reverse
      >>> flip = chain(reverse(3), reverse(3))
      >>> y, logdet = flip.forward(flip.init(jax.random.key(0)), jnp.eye(3)[:1])
      >>> y.tolist(), logdet.tolist()
      ([[1.0, 0.0, 0.0]], [0.0])
    """
    if not bijections:
        raise ValueError("chain needs at least one bijection")
    parts: Sequence[Bijection] = bijections

    def init(key):
        keys = jax.random.split(key, len(parts))
        return tuple(part.init(k) for part, k in zip(parts, keys, strict=True))

    def forward(params, x, context=None):
        total = jnp.zeros(x.shape[:1], x.dtype)
        for part, p in zip(parts, params, strict=True):
            x, logdet = call(part, part.forward, p, x, context)
            total = total + logdet
        return x, total

    def inverse(params, y, context=None):
        total = jnp.zeros(y.shape[:1], y.dtype)
        for part, p in zip(reversed(parts), reversed(params), strict=True):
            y, logdet = call(part, part.inverse, p, y, context)
            total = total + logdet
        return y, total

    def initialize(params, x, context=None):
        new = []
        for part, p in zip(parts, params, strict=True):
            p = call(part, part.initialize, p, x, context)
            x, _ = call(part, part.forward, p, x, context)
            new.append(p)
        return tuple(new)

    conditional = any(part.conditional for part in parts)
    return Bijection(init, forward, inverse, initialize, conditional)


def scan(
    make: Callable[[Any], Bijection], structure: Any, *, unroll: bool = False
) -> Bijection:
    """Compose ``L`` layers of one shape by ``jax.lax.scan`` over stacked parameters.

    ``structure`` is a pytree of arrays with leading axis ``L`` (e.g. the masks of
    alternating couplings); layer ``k`` is ``make(structure[k])``. The result equals
    ``chain(make(structure[0]), ..., make(structure[L - 1]))``, but each layer's
    program is traced and compiled once, so compile time does not grow with ``L``.
    ``params`` is the layers' params stacked along a leading axis of size ``L``.
    ``make`` is called with traced slices, so it may only use their static shapes.

    ``unroll=True`` unrolls the scan of ``forward`` (the direction ``log_prob`` and
    training use) into ``L`` copies of the layer: compile time grows with ``L``, and
    XLA optimises across layers. On a 2-core CPU that made the training step of
    ``realnvp_digits``' Glow (8 convolutional steps per scale) 3.2x faster, 62 ->
    20 ms, for 5 s more compilation, while RealNVP's MLP couplings got 10% slower:
    the builders unroll convolutional steps only.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import affine_coupling, mlp_conditioner, scan
      >>> masks = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> stack = scan(lambda m: affine_coupling(m, mlp_conditioner(2, (8,))), masks)
      >>> params = stack.init(jax.random.key(0))
      >>> params["net"][0]["b"].shape  # the first hidden layer's biases, stacked
      (2, 8)
    """
    sizes = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(structure)}
    if len(sizes) != 1:
        raise ValueError(
            f"structure leaves need one shared leading (layer) axis, got sizes {sizes}"
        )
    (num_layers,) = sizes
    conditional = make(jax.tree.map(lambda s: s[0], structure)).conditional

    def init(key):
        keys = jax.random.split(key, num_layers)
        return jax.vmap(lambda k, s: make(s).init(k))(keys, structure)

    def forward(params, x, context=None):
        def body(h, layer):
            p, s = layer
            bijection = make(s)
            return call(bijection, bijection.forward, p, h, context)

        y, logdets = jax.lax.scan(body, x, (params, structure), unroll=unroll)
        return y, jnp.sum(logdets, axis=0)

    def inverse(params, y, context=None):
        def body(h, layer):
            p, s = layer
            bijection = make(s)
            return call(bijection, bijection.inverse, p, h, context)

        x, logdets = jax.lax.scan(body, y, (params, structure), reverse=True)
        return x, jnp.sum(logdets, axis=0)

    def initialize(params, x, context=None):
        def body(h, layer):
            p, s = layer
            bijection = make(s)
            p = call(bijection, bijection.initialize, p, h, context)
            h, _ = call(bijection, bijection.forward, p, h, context)
            return h, p

        _, params = jax.lax.scan(body, x, (params, structure))
        return params

    return Bijection(init, forward, inverse, initialize, conditional)

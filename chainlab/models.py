"""Small Flax networks shared by the experiments.

``MLP`` and ``ConvNet`` are ``flax.linen`` modules, so ``model.apply(params, x)`` is a
pure function of the parameters, ready for ``jax.grad``, ``jax.jacfwd`` and friends.
This is the batch convention of the library: training-time APIs take
``apply(params, x_batch)``; per-example mathematics takes a closure
``f = lambda x: model.apply(params, x)``.

Every layer has an explicit name, so parameters are reached by structure: the ``i``-th
``Dense`` layer of an ``MLP`` is ``params["params"]["dense_i"]`` (see
:func:`dense_layers`), a ``ConvNet``'s convolutions are ``conv_i`` and its readout
``readout``, a ``MaxoutMLP``'s maxout layers ``maxout_i`` and its readout ``readout``.
Weights are ``(in, out)``, as in Flax.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from chainlab.layers import Maxout, MaxoutRouting, Ties
from chainlab.validation import check_choice, check_rank

__all__ = [
    "MLP",
    "ConvNet",
    "MaxoutMLP",
    "dense_layers",
    "maxout_routings",
    "maxout_win_fractions",
    "tie_maxout_pieces",
]


def _dense_name(i: int) -> str:
    return f"dense_{i}"


class MLP(nn.Module):
    """Fully connected network ``x -> Dense -> act -> ... -> Dense`` (no final act).

    The ``Dense`` layers are named ``dense_0``, ``dense_1``, ... in network order;
    ``activation`` is a callable (``jnp.tanh``, ``jax.nn.relu``, ...).

    Example: ``MLP((128, 128, 10))`` maps ``(..., 64)`` digits to 10 logits.

    >>> import jax, jax.numpy as jnp
    >>> params = MLP((3, 2)).init(jax.random.key(0), jnp.zeros(4))
    >>> sorted(params["params"])
    ['dense_0', 'dense_1']
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        last = len(self.features) - 1
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=_dense_name(i))(x)
            if i < last:
                x = self.activation(x)
        return x


def dense_layers(params: Mapping[str, Any]) -> list[dict[str, jax.Array]]:
    """An :class:`MLP`'s ``{"kernel", "bias"}`` per ``Dense`` layer, in network order.

    ``params`` is what ``MLP.init`` returns (``{"params": {...}}``) or its inner dict.
    Layer ``i`` is looked up by the name the module gives it (``dense_i``), so the
    order does not depend on how a dict was rebuilt (``jax.tree.map`` sorts keys,
    which puts ``dense_10`` before ``dense_2``). Kernels are ``(in, out)``.

    Raises ``ValueError`` when ``params`` holds no ``dense_0`` layer.

    >>> import jax, jax.numpy as jnp
    >>> params = MLP((3, 2)).init(jax.random.key(0), jnp.zeros(4))
    >>> [layer["kernel"].shape for layer in dense_layers(params)]
    [(4, 3), (3, 2)]
    """
    inner = params.get("params", params)
    if _dense_name(0) not in inner:
        raise ValueError(
            f"params must be an MLP's parameters (with a {_dense_name(0)!r} layer), "
            f"got keys {sorted(inner)}"
        )
    layers = []
    while _dense_name(len(layers)) in inner:
        layer = inner[_dense_name(len(layers))]
        layers.append({"kernel": layer["kernel"], "bias": layer["bias"]})
    return layers


class ConvNet(nn.Module):
    """Small convolutional network on flattened images ``(..., h * w * c) -> logits``.

    The input ``(..., h * w * c)`` is reshaped to ``(n, *image_shape)``, then passes
    ``conv 3x3 -> act`` layers (named ``conv_0``, ``conv_1``, ...), ``features[i]``
    channels each ('SAME' padding; the first keeps the size, each later one halves it
    with stride 2), and a ``Dense`` layer named ``readout`` on the flattened features;
    the output is ``(..., num_outputs)``. Examples never mix, so the Jacobian of one
    example's logits is zero for every other example. Taking flat vectors keeps the
    interface of :class:`MLP`, so Jacobians ``d logits / d x`` have the same shape for
    both.

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
            conv = nn.Conv(width, (3, 3), strides=stride, name=f"conv_{i}")
            h = self.activation(conv(h))
        readout = nn.Dense(self.num_outputs, name="readout")
        logits = readout(h.reshape(h.shape[0], -1))
        return logits.reshape(*batch, self.num_outputs)


class MaxoutMLP(nn.Module):
    """Maxout network: ``Maxout`` layers (``maxout_0``, ...), then a Dense ``readout``.

    Each hidden layer has ``hidden[i]`` units of ``pieces`` affine pieces
    (:class:`chainlab.layers.Maxout`, tie rule ``ties``); Goodfellow et al., "Maxout
    Networks", ICML 2013. :func:`maxout_routings` gives every layer's routing.

    Example: ``MaxoutMLP((64, 64), pieces=4, num_outputs=10)`` on ``(..., 64)`` digits.
    """

    hidden: Sequence[int]
    pieces: int = 2
    num_outputs: int = 10
    ties: Ties = "lowest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = Maxout(width, self.pieces, ties=self.ties, name=f"maxout_{i}")(x)
        return nn.Dense(self.num_outputs, name="readout")(x)


def maxout_routings(
    model: MaxoutMLP, params: Mapping[str, Any], x: jax.Array
) -> tuple[jax.Array, list[MaxoutRouting]]:
    """The outputs of a :class:`MaxoutMLP` at ``x`` and each maxout layer's routing.

    The routings are the ones the ``Maxout`` layers sow while computing the outputs
    (:func:`chainlab.layers.maxout_routing`), in network order.

    >>> import jax, jax.numpy as jnp
    >>> model = MaxoutMLP((5, 4), pieces=3, num_outputs=2)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    >>> _, routings = maxout_routings(model, params, jnp.ones((7, 6)))
    >>> [r.winner.shape for r in routings]
    [(7, 5), (7, 4)]
    """
    outputs, state = model.apply(params, x, mutable=["intermediates"])
    sown = state["intermediates"]
    routings = [sown[f"maxout_{i}"]["routing"][0] for i in range(len(model.hidden))]
    return outputs, routings


def maxout_win_fractions(
    model: MaxoutMLP, params: Mapping[str, Any], x: jax.Array
) -> list[jax.Array]:
    """Per maxout layer, ``(pieces, units)``: the share of the rows of ``x`` (``(n,
    d_in)``) on which each piece wins each unit. A piece that never wins gets no
    gradient, so it never learns (Goodfellow et al., "Maxout Networks", ICML 2013).

    >>> import jax, jax.numpy as jnp
    >>> model = MaxoutMLP((5,), pieces=3, num_outputs=2)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    >>> [w.shape for w in maxout_win_fractions(model, params, jnp.ones((7, 6)))]
    [(3, 5)]
    """
    check_rank("x", x, 2)
    _, routings = maxout_routings(model, params, x)
    return [
        jnp.mean(jax.nn.one_hot(r.winner, model.pieces, axis=1), axis=0)
        for r in routings
    ]


def tie_maxout_pieces(
    model: MaxoutMLP, params: Mapping[str, Any], *, source: int = 0, target: int = 1
) -> dict[str, Any]:
    """``params`` with piece ``source`` copied into piece ``target`` in every maxout
    layer (``maxout_i``), so the two tie exactly wherever ``source`` wins; the readout
    and every other piece are kept. Returns ``{"params": ...}``.

    >>> import jax, jax.numpy as jnp
    >>> model = MaxoutMLP((5,), pieces=3, num_outputs=2)
    >>> tied = tie_maxout_pieces(model, model.init(jax.random.key(0), jnp.zeros(6)))
    >>> layer = tied["params"]["maxout_0"]
    >>> bool((layer["kernel"][0] == layer["kernel"][1]).all())
    True
    """
    check_choice("source", source, range(model.pieces))
    check_choice("target", target, [p for p in range(model.pieces) if p != source])
    layers = dict(params.get("params", params))
    for i in range(len(model.hidden)):
        name = f"maxout_{i}"
        layers[name] = jax.tree.map(lambda a: a.at[target].set(a[source]), layers[name])
    return {"params": layers}

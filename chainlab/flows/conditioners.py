"""Conditioner networks for coupling layers, as pure ``(init, apply)`` pairs.

A conditioner maps the masked input ``x * m`` to the two per-entry outputs of an affine
coupling, a shift ``t`` and an unbounded log-scale ``r``, each with the event shape of
``x``. Its last layer starts at zero, so ``t = r = 0`` and a new coupling is the
identity (Kingma & Dhariwal 2018, "Glow", section 3.3).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from chainlab.validation import check_at_least

__all__ = ["Conditioner", "conv_conditioner", "mlp_conditioner"]

Activation = Callable[[jax.Array], jax.Array]


class Conditioner(NamedTuple):
    """``init(key) -> params``; ``apply(params, x) -> (shift, log_scale)``."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def _float() -> jnp.dtype:
    return jnp.result_type(float)


def _dense_init(key: jax.Array, fan_in: int, fan_out: int) -> dict:
    weight = jax.nn.initializers.lecun_normal()(key, (fan_in, fan_out), _float())
    return {"w": weight, "b": jnp.zeros((fan_out,), _float())}


def _dense(layer: dict, x: jax.Array) -> jax.Array:
    return x @ layer["w"] + layer["b"][None, :]


def mlp_conditioner(
    dim: int, hidden: Sequence[int], *, activation: Activation = jax.nn.relu
) -> Conditioner:
    """A fully connected conditioner ``(n, dim) -> ((n, dim), (n, dim))``.

    Layers ``dim -> hidden[0] -> ... -> hidden[-1] -> 2 dim`` with ``activation``
    between them (LeCun-normal weights) and a zero-initialised output layer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = mlp_conditioner(2, (16, 16))
      >>> shift, log_scale = net.apply(net.init(jax.random.key(0)), jnp.ones((5, 2)))
      >>> shift.shape, float(jnp.abs(log_scale).max())
      ((5, 2), 0.0)
    """
    check_at_least("dim", dim, 1)
    widths = tuple(hidden)
    for width in widths:
        check_at_least("hidden widths", width, 1)
    sizes = (dim, *widths)

    def init(key):
        keys = jax.random.split(key, len(widths))
        layers = [
            _dense_init(k, fan_in, fan_out)
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]
        zeros = jnp.zeros((sizes[-1], 2 * dim), _float())
        layers.append({"w": zeros, "b": jnp.zeros((2 * dim,), _float())})
        return layers

    def apply(params, x):
        h = x
        for layer in params[:-1]:
            h = activation(_dense(layer, h))
        out = _dense(params[-1], h)
        return out[:, :dim], out[:, dim:]

    return Conditioner(init, apply)


def _conv_init(key: jax.Array, size: int, c_in: int, c_out: int) -> dict:
    shape = (size, size, c_in, c_out)
    kernel = jax.nn.initializers.lecun_normal()(key, shape, _float())
    return {"w": kernel, "b": jnp.zeros((c_out,), _float())}


def _conv(layer: dict, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x,
        layer["w"],
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + layer["b"][None, None, None, :]


def conv_conditioner(
    channels: int,
    hidden: int,
    *,
    kernel_size: int = 3,
    activation: Activation = jax.nn.relu,
) -> Conditioner:
    """Glow's convolutional conditioner ``(n, h, w, c) -> two (n, h, w, c)`` arrays.

    ``conv k x k (hidden) -> act -> conv 1 x 1 (hidden) -> act -> conv k x k (2 c)``
    with 'SAME' padding; the last convolution is zero-initialised.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = conv_conditioner(4, 8)
      >>> params = net.init(jax.random.key(0))
      >>> shift, log_scale = net.apply(params, jnp.ones((2, 4, 4, 4)))
      >>> shift.shape
      (2, 4, 4, 4)
    """
    check_at_least("channels", channels, 1)
    check_at_least("hidden", hidden, 1)
    check_at_least("kernel_size", kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")

    def init(key):
        k1, k2 = jax.random.split(key)
        last = (kernel_size, kernel_size, hidden, 2 * channels)
        return [
            _conv_init(k1, kernel_size, channels, hidden),
            _conv_init(k2, 1, hidden, hidden),
            {"w": jnp.zeros(last, _float()), "b": jnp.zeros((2 * channels,), _float())},
        ]

    def apply(params, x):
        h = activation(_conv(params[0], x))
        h = activation(_conv(params[1], h))
        out = _conv(params[2], h)
        return out[..., :channels], out[..., channels:]

    return Conditioner(init, apply)

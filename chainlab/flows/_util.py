"""Shape helpers shared by the bijections (private)."""

import math

import jax
import jax.numpy as jnp


def last_axis(v: jax.Array, ndim: int) -> jax.Array:
    """Reshape a ``(c,)`` vector to broadcast along the last axis of ``ndim`` axes."""
    return jnp.reshape(v, (1,) * (ndim - 1) + v.shape)


def sites(x: jax.Array) -> int:
    """Number of positions sharing one channel vector: ``prod(x.shape[1:-1])``."""
    return math.prod(x.shape[1:-1])


def check_channels(x: jax.Array, channels: int, name: str) -> None:
    """Refuse inputs without a batch axis or with the wrong number of channels."""
    if x.ndim < 2 or x.shape[-1] != channels:
        raise ValueError(
            f"{name} expects inputs of shape (n, ..., {channels}), got {x.shape}"
        )


def check_event(x: jax.Array, event_shape: tuple[int, ...], name: str) -> None:
    """Refuse inputs whose event shape (all axes after the first) is not as given."""
    if x.shape[1:] != tuple(event_shape):
        shape = ", ".join(map(str, ("n", *event_shape)))
        raise ValueError(f"{name} expects inputs of shape ({shape}), got {x.shape}")

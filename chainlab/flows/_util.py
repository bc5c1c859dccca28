"""Shape and structure checks shared by the bijections (private)."""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.validation import check_shape, concrete


def call(part: Any, fn: Callable, params: Any, x: jax.Array, context: Any) -> Any:
    """``fn(params, x)``, or ``fn(params, x, context)`` when ``part`` (a bijection)
    is conditional: unconditional bijections keep two-argument functions."""
    return fn(params, x, context) if part.conditional else fn(params, x)


def last_axis(v: jax.Array, ndim: int) -> jax.Array:
    """Reshape a ``(c,)`` vector to broadcast along the last axis of ``ndim`` axes."""
    return jnp.reshape(v, (1,) * (ndim - 1) + v.shape)


def sites(x: jax.Array) -> int:
    """Number of positions sharing one channel vector: ``prod(x.shape[1:-1])``."""
    return math.prod(x.shape[1:-1])


def check_channels(x: jax.Array, channels: int, name: str) -> None:
    """Refuse inputs without a batch axis or with the wrong number of channels."""
    check_shape(f"{name} input", x, (None, ..., channels))


def check_event(x: jax.Array, event_shape: tuple[int, ...], name: str) -> None:
    """Refuse inputs whose event shape (all axes after the first) is not as given."""
    check_shape(f"{name} input", x, (None, *event_shape))


def check_permutation(name: str, perm: ArrayLike, size: int | None = None) -> None:
    """``perm`` is a 1-D integer array holding each of ``0..len - 1`` once.

    The values are checked when concrete; a repeated index would make the map
    non-invertible with a log-det of 0, a silently wrong density.
    """
    shape, dtype = np.shape(perm), jnp.asarray(perm).dtype
    if len(shape) != 1 or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must be a 1-D integer array, got {dtype}{shape}")
    if size is not None and shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {shape}")
    values = concrete(perm)
    if values is not None and not np.array_equal(
        np.sort(values), np.arange(len(values))
    ):
        raise ValueError(
            f"{name} must hold each of 0..{len(values) - 1} once, got {values.tolist()}"
        )


def check_context(context: Any, n: int, context_dim: int, name: str) -> Any:
    """The context of a batch of ``n`` events as ``(n, context_dim)``, or ``None``.

    An unconditional ``name`` (``context_dim == 0``) refuses a context; a conditional
    one needs ``(n, context_dim)`` or one ``(context_dim,)`` shared by the batch.
    """
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"{name} is unconditional (context_dim=0): got a context")
        return None
    if context is None:
        raise ValueError(
            f"{name} is conditional: pass a context of shape (n, {context_dim}) "
            f"or ({context_dim},)"
        )
    context = jnp.asarray(context)
    if context.ndim == 1:
        check_shape(f"{name} context", context, (context_dim,))
        return jnp.broadcast_to(context[None], (n, context_dim))
    check_shape(f"{name} context", context, (n, context_dim))
    return context

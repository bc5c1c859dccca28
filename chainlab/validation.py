"""Argument checks shared by every library function: one helper per kind of check.

Every message has the same shape: the argument's name, what is allowed, what was given
(``"tau must be > 0, got -1.0"``).

- **Values** (``tau > 0``, ``delta > 0``, ``sigma >= 0``, ``steps >= 1``, ...) are
  checked whenever the value is *concrete*: a Python scalar, a numpy array or a jax
  array that is not a tracer. Under ``jax.jit`` (or ``vmap``, ``grad`` of the setting
  itself) the value is a tracer and cannot be inspected without a host round trip, so
  the check is skipped and the function computes with what it was given; validate
  settings before tracing, or wrap the call in ``jax.experimental.checkify`` for
  checks that survive ``jit``.
- **Shapes, ranks, dtypes** are static, so they are checked at trace time, under
  ``jit`` too, with chex's assertions; the failure becomes a one-line ``ValueError``
  (``TypeError`` for dtypes) naming the argument.
- **Choices** (``method=``, ``side=``, ``kind=``) name every allowed option.

Example:
  >>> import jax.numpy as jnp
  >>> check_positive("tau", jnp.array(-1.0))
  Traceback (most recent call last):
  ...
  ValueError: tau must be > 0, got -1.0
"""

from collections.abc import Collection
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "as_real_float",
    "check_at_least",
    "check_choice",
    "check_finite",
    "check_nonnegative",
    "check_positive",
    "check_rank",
    "check_shape",
    "concrete",
]


def concrete(value: Any) -> np.ndarray | None:
    """``value`` as a numpy array when it is known now; ``None`` for a tracer."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _shown(array: np.ndarray) -> str:
    return repr(array.item()) if array.size == 1 else f"an array containing {array}"


def _check(name: str, value: Any, allowed: str, ok) -> None:
    array = concrete(value)
    if array is None or array.dtype == object:
        return
    if not np.all(ok(array)):
        raise ValueError(f"{name} must be {allowed}, got {_shown(array)}")


def check_positive(name: str, value: ArrayLike) -> None:
    """``value > 0`` elementwise (NaN is refused), when concrete."""
    _check(name, value, "> 0", lambda a: a > 0)


def check_nonnegative(name: str, value: ArrayLike) -> None:
    """``value >= 0`` elementwise (NaN is refused), when concrete."""
    _check(name, value, ">= 0", lambda a: a >= 0)


def check_finite(name: str, value: ArrayLike) -> None:
    """No NaN or infinity in ``value``, when concrete."""
    _check(name, value, "finite", np.isfinite)


def check_at_least(name: str, value: int, minimum: int) -> None:
    """An integer setting (a count of steps, probes, layers) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")


def check_choice(name: str, value: Any, allowed: Collection[Any]) -> None:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(option) for option in allowed)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")


def check_rank(name: str, x: ArrayLike, rank: int | set[int]) -> None:
    """``x`` has rank ``rank`` (or one of a set of ranks); checked at trace time."""
    try:
        chex.assert_rank(x, rank)
    except AssertionError:
        allowed = rank if isinstance(rank, int) else " or ".join(map(str, sorted(rank)))
        raise ValueError(
            f"{name} must have rank {allowed}, got shape {np.shape(x)}"
        ) from None


def check_shape(name: str, x: ArrayLike, shape: tuple[int | None, ...]) -> None:
    """``x`` has ``shape`` (``None`` matches any size); checked at trace time."""
    try:
        chex.assert_shape(x, shape)
    except AssertionError:
        wanted = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(
            f"{name} must have shape {wanted}, got {np.shape(x)}"
        ) from None


def as_real_float(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as a real floating jax array (ints and bools promoted); else TypeError."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x

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

import math
from collections.abc import Callable, Collection
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "as_real_float",
    "as_static_number",
    "check_at_least",
    "check_broadcastable",
    "check_choice",
    "check_dtype",
    "check_finite",
    "check_in_range",
    "check_nonnegative",
    "check_positive",
    "check_rank",
    "check_same_shape",
    "check_scalar_output",
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


def check_in_range(
    name: str, value: ArrayLike, low: float, high: float, *, high_inclusive=False
) -> None:
    """``low <= value < high`` elementwise (``<= high`` with ``high_inclusive``).

    Checked when concrete; NaN is refused.

    Example:
      >>> check_in_range("momentum", 1.0, 0, 1)
      Traceback (most recent call last):
      ...
      ValueError: momentum must be in [0, 1), got 1.0
    """
    bracket = "]" if high_inclusive else ")"
    _check(
        name,
        value,
        f"in [{low}, {high}{bracket}",
        lambda a: (a >= low) & ((a <= high) if high_inclusive else (a < high)),
    )


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
        if rank == 0:
            raise ValueError(
                f"{name} must be a scalar (rank 0), got shape {np.shape(x)}"
            ) from None
        allowed = rank if isinstance(rank, int) else " or ".join(map(str, sorted(rank)))
        raise ValueError(
            f"{name} must have rank {allowed}, got shape {np.shape(x)}"
        ) from None


def _shape_text(shape: tuple) -> str:
    sizes = ["*" if s is None else "..." if s is Ellipsis else str(s) for s in shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


def check_shape(name: str, x: ArrayLike, shape: tuple[int | None, ...]) -> None:
    """``x`` has ``shape`` (``None`` matches any size, ``...`` any number of leading
    or trailing axes, as in chex); checked at trace time.

    Example:
      >>> check_shape("x", jnp.ones((2, 3)), (..., 4))
      Traceback (most recent call last):
      ...
      ValueError: x must have shape (..., 4), got (2, 3)
    """
    try:
        chex.assert_shape(x, shape)
    except AssertionError:
        raise ValueError(
            f"{name} must have shape {_shape_text(shape)}, got {np.shape(x)}"
        ) from None


def check_same_shape(**arrays: ArrayLike) -> None:
    """All the named arrays have one shape; checked at trace time.

    Example:
      >>> check_same_shape(anchor=jnp.ones(2), positive=jnp.ones(3))
      Traceback (most recent call last):
      ...
      ValueError: anchor and positive must have the same shape, got (2,) and (3,)
    """
    shapes = [np.shape(a) for a in arrays.values()]
    if any(shape != shapes[0] for shape in shapes):
        names, given = list(arrays), [str(shape) for shape in shapes]
        raise ValueError(
            f"{_listed(names)} must have the same shape, got {_listed(given)}"
        )


def _listed(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def check_broadcastable(name: str, value: ArrayLike, shape: tuple[int, ...]) -> None:
    """A per-element setting: a scalar, or an array of rank ``len(shape)`` whose every
    axis is 1 or the size of ``shape``'s (so it broadcasts without adding axes, as a
    per-channel ``(1, C)`` slope does for a ``(N, C)`` input); checked at trace time.

    Example:
      >>> check_broadcastable("slope", jnp.ones((1, 3)), (2, 3))  # per channel: fine
      >>> check_broadcastable("slope", jnp.ones((2, 2)), (2, 3))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: slope must be a scalar or an array of the input's rank that ...
    """
    value_shape = np.shape(value)
    fits = len(value_shape) == len(shape) and all(
        a == b or a == 1 for a, b in zip(value_shape, shape, strict=True)
    )
    if value_shape != () and not fits:
        raise ValueError(
            f"{name} must be a scalar or an array of the input's rank that broadcasts"
            f" against it, got shape {value_shape} for input shape {tuple(shape)}"
        )


def check_dtype(name: str, x: ArrayLike, kind: type) -> None:
    """``x``'s dtype is a sub-dtype of ``kind`` (``jnp.integer``, ``jnp.bool_``,
    ``jnp.floating``, ...); else ``TypeError``. Checked at trace time.

    Example:
      >>> check_dtype("labels", jnp.zeros(2), jnp.integer)
      Traceback (most recent call last):
      ...
      TypeError: labels must have a integer dtype, got float32
    """
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, kind):
        raise TypeError(f"{name} must have a {kind.__name__} dtype, got {dtype}")


def check_scalar_output(
    name: str, f: Callable[..., Any], *args: Any, hint: str = ""
) -> None:
    """``f(*args)`` returns a scalar; found with ``jax.eval_shape`` (nothing runs).

    Example:
      >>> check_scalar_output("f", lambda x: 2 * x, jnp.ones(3))
      Traceback (most recent call last):
      ...
      ValueError: f must return a scalar, got shape (3,)
    """
    out = jax.eval_shape(f, *args)
    shape = getattr(out, "shape", None)
    if shape != ():
        given = shape if shape is not None else type(out).__name__
        raise ValueError(f"{name} must return a scalar, got shape {given}{hint}")


def as_static_number(name: str, value: Any) -> float:
    """A setting that fixes the program (``p`` of a p-norm): a Python or NumPy real
    number, never an array or a bool; returned as a Python float (``math.inf`` too).

    Example:
      >>> as_static_number("p", 2)
      2.0
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a Python number, got {value!r}")
    if isinstance(value, np.complexfloating):
        raise TypeError(f"{name} must be real, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got nan")
    return number


def as_real_float(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as a real floating jax array (ints and bools promoted); else TypeError."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x

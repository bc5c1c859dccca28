"""Report pieces: declarative checks, value formatting and markdown tables.

A check states its threshold once, as a number; the same number renders the report's
target text and decides the verdict, so the two cannot drift apart::

    work.check("max |IFT - closed form|", error, at_most=1e-6, source="Varian (1992)")
    work.check("dx*/dM", ift, close_to=closed, rtol=1e-6, label="-(b/D) M/P^2",
               source="implicit function theorem")
    work.check("wall time", seconds, info="reported", source="this machine")
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Check", "format_value", "make_check", "markdown_table", "to_json"]

_VERDICTS = {True: "pass", False: "FAIL", None: "info"}
_THRESHOLDS = ("at_most", "at_least", "below", "above", "between", "equals", "close_to")


@dataclass
class Check:
    """One row of a report: a measured figure against its target."""

    name: str
    measured: Any
    target: str
    source: str
    passed: bool | None

    def row(self) -> list[str]:
        """The cells of this check's table row."""
        return [
            self.name,
            format_value(self.measured),
            self.target,
            self.source,
            _VERDICTS[self.passed],
        ]


def make_check(
    name: str,
    measured: Any,
    *,
    source: str,
    at_most: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    above: float | None = None,
    between: tuple[float, float] | None = None,
    equals: Any = None,
    close_to: Any = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    label: str | None = None,
    info: str | None = None,
) -> Check:
    """A :class:`Check` whose target text and verdict come from one threshold.

    Exactly one of ``at_most`` (<=), ``at_least`` (>=), ``below`` (<), ``above`` (>),
    ``between`` (inclusive ``(low, high)``), ``equals``, ``close_to`` (``|measured -
    reference| <= atol + rtol |reference|``, elementwise) or ``info`` (a target text
    with no verdict) is given. Array-valued measurements pass when every element does.
    ``label`` names the reference in the target text (e.g. ``"closed form"``).
    """
    given = {
        key: value
        for key, value in {
            "at_most": at_most,
            "at_least": at_least,
            "below": below,
            "above": above,
            "between": between,
            "equals": equals,
            "close_to": close_to,
            "info": info,
        }.items()
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            f"check {name!r} needs exactly one of {', '.join(_THRESHOLDS)} or info, "
            f"got {sorted(given) or 'none'}"
        )
    ((kind, threshold),) = given.items()
    value = to_json(measured)
    if kind == "info":
        return Check(name, value, threshold, source, None)
    target, passed = _judge(kind, threshold, np.asarray(measured), rtol, atol)
    if label:
        target = f"{label}: {target}" if kind != "equals" else f"{label} ({target})"
    return Check(name, value, target, source, passed)


def _judge(
    kind: str, threshold: Any, measured: np.ndarray, rtol: float, atol: float
) -> tuple[str, bool]:
    shown = format_value(to_json(threshold))
    if kind == "at_most":
        return f"<= {shown}", bool(np.all(measured <= threshold))
    if kind == "at_least":
        return f">= {shown}", bool(np.all(measured >= threshold))
    if kind == "below":
        return f"< {shown}", bool(np.all(measured < threshold))
    if kind == "above":
        return f"> {shown}", bool(np.all(measured > threshold))
    if kind == "between":
        low, high = threshold
        inside = (measured >= low) & (measured <= high)
        return f"in [{format_value(low)}, {format_value(high)}]", bool(np.all(inside))
    if kind == "equals":
        return f"= {shown}", bool(np.array_equal(measured, np.asarray(threshold)))
    reference = np.asarray(threshold)
    close = np.abs(measured - reference) <= atol + rtol * np.abs(reference)
    return f"{shown} {_tolerance_text(rtol, atol)}", bool(np.all(close))


def _tolerance_text(rtol: float, atol: float) -> str:
    if rtol and atol:
        return f"within {atol:g} + {rtol:g} relative"
    if atol:
        return f"within {atol:g}"
    if rtol:
        return f"within {rtol:g} relative"
    return "exactly"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; cells that are not strings go through :func:`format_value`.

    Example:
      >>> print(markdown_table(["x", "y"], [[1, 0.5]]))
      | x | y |
      |---|---|
      | 1 | 0.5 |
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"row {list(row)} has {len(row)} cells, need {len(header)}"
            )

    def line(cells: Sequence[Any]) -> str:
        shown = (c if isinstance(c, str) else format_value(to_json(c)) for c in cells)
        return "| " + " | ".join(shown) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def format_value(value: Any) -> str:
    """Short human form of a measured value for a table cell."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value == 0 or math.isnan(value) or math.isinf(value):
            return str(value)
        magnitude = abs(value)
        return (
            f"{value:.3e}" if magnitude < 1e-3 or magnitude >= 1e6 else f"{value:.6g}"
        )
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def to_json(value: Any) -> Any:
    """Convert numpy / jax scalars and arrays inside ``value`` to plain Python."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    array = np.asarray(value)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        return array.tolist()
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(float).tolist()
    return str(value)

"""Step times that stay comparable: the calls timed side by side, in several rounds.

A machine's speed drifts over seconds (other processes, frequency scaling), so the time
of one call is only compared with another's measured over the same stretch:
:func:`chainlab.training.interleaved_median_ms` lets the calls take turns in blocks.
:func:`interleaved_rounds` repeats that a few times, so that a ratio between two calls
can be taken per round and its spread seen.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from chainlab.training import interleaved_median_ms

__all__ = ["interleaved_rounds"]


def interleaved_rounds(
    calls: dict[Any, Callable[[], Any]], repeats: int, *, rounds: int, block: int
) -> dict[Any, np.ndarray]:
    """Median wall ms of every call in each of ``rounds`` rounds of interleaved turns.

    Each round is one :func:`chainlab.training.interleaved_median_ms` over ``calls``
    with ``repeats`` timed calls each, in turns of ``block`` calls. Returns ``{name:
    array (rounds,)}``, so that ``times[a] / times[b]`` is the ratio per round, both
    calls timed over the same stretch. Raises ``ValueError`` when ``rounds``,
    ``repeats`` or ``block`` is below 1.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones(4)
      >>> times = interleaved_rounds({"double": lambda: x * 2}, 3, rounds=2, block=2)
      >>> times["double"].shape
      (2,)
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    medians = [interleaved_median_ms(calls, repeats, block) for _ in range(rounds)]
    return {name: np.asarray([m[name].wall_ms for m in medians]) for name in calls}

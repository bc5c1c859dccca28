"""Progress bars that stay out of logs: shown on a terminal, silent otherwise."""

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    initial: int = 0,
):
    """A tqdm progress bar on stderr, disabled when stderr is not a terminal."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        initial=initial,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
        leave=False,
    )

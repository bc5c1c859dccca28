"""Progress on long loops: a live bar on a terminal, a line now and then in a log.

On a terminal (stderr is a TTY) :func:`progress` is a tqdm bar. Otherwise (a batch
job, a redirected log, a notebook's captured stderr) it stays silent for the first
:data:`LOG_EVERY_SECONDS` and then prints one plain line at most that often, so a
long run shows it is alive without filling the log with redraws.
"""

import io
import sys
from collections.abc import Iterable

from tqdm import tqdm

LOG_EVERY_SECONDS = 30.0


class _Lines(io.TextIOBase):
    """A stream for tqdm that turns each redraw into one line of ``stream``."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    initial: int = 0,
    disable: bool = False,
):
    """A tqdm progress bar on stderr: live on a terminal, periodic lines otherwise;
    nothing with ``disable``."""
    common = {"total": total, "desc": desc, "initial": initial, "leave": False}
    if sys.stderr.isatty() or disable:
        return tqdm(iterable, dynamic_ncols=True, disable=disable, **common)
    return tqdm(
        iterable,
        file=_Lines(sys.stderr),
        ncols=80,
        ascii=True,
        delay=LOG_EVERY_SECONDS,
        mininterval=LOG_EVERY_SECONDS,
        maxinterval=LOG_EVERY_SECONDS,
        **common,
    )

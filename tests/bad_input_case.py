"""The shape of one bad-input case (see ``test_bad_inputs.py``)."""

from collections.abc import Callable
from typing import NamedTuple


class Case(NamedTuple):
    """``call()`` must raise ``error`` with a message matching ``match``."""

    id: str
    call: Callable[[], object]
    error: type[Exception]
    match: str

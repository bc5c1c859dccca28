"""The runner: experiment registry, config overrides, workdirs, reports, command line.

The library (everything else under ``chainlab``) imports nothing from here; the
experiments (``chainlab.runner.experiments``) compose library calls and report through
:class:`~chainlab.runner.workdir.Workdir`.
"""

from chainlab.runner.execution import run
from chainlab.runner.registry import describe, get_config, list_experiments
from chainlab.runner.reproduction import Reproduction, reproduce
from chainlab.runner.workdir import Workdir

__all__ = [
    "Reproduction",
    "Workdir",
    "describe",
    "get_config",
    "list_experiments",
    "reproduce",
    "run",
]

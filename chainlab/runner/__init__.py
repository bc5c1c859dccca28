"""The runner: experiment registry, config overrides, workdirs, reports, command line.

The library (everything else under ``chainlab``) imports nothing from here; the
experiments (``chainlab.runner.experiments``) compose library calls and report through
:class:`~chainlab.runner.workdir.Workdir`. Names load on first use, so the command
line starts without importing JAX until a command needs it.
"""

import importlib

_HOMES = {
    "run": "execution",
    "describe": "registry",
    "get_config": "registry",
    "list_experiments": "registry",
    "Reproduction": "reproduction",
    "reproduce": "reproduction",
    "Workdir": "workdir",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"chainlab.runner.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'chainlab.runner' has no attribute {name!r}")

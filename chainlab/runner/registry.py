"""The experiment registry: which experiments exist and how their configs resolve.

An experiment NAME is two modules that ship with the package:

- ``experiments/NAME.py`` (``chainlab.runner.experiments.NAME``): ``run(config,
  workdir) -> dict``; the first line of its docstring is its description.
- ``configs/NAME.py`` (``chainlab.runner.configs.NAME``): ``get_config(variant) ->
  ConfigDict`` with variants ``""`` (paper scale) and ``"quick"`` (seconds).

Your own experiments need no change to the package: put ``experiments/NAME.py`` and
``configs/NAME.py`` under a folder and list it in the ``CHAINLAB_PATH`` environment
variable (``os.pathsep``-separated, like ``PYTHONPATH``).
"""

import difflib
import importlib
import os
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

import chainlab.runner.configs
import chainlab.runner.experiments
from chainlab.errors import ChainlabError
from chainlab.runner.overrides import apply_overrides, load_config_file

__all__ = ["describe", "experiment_module", "get_config", "list_experiments"]

DEFAULT_VARIANTS = ("", "quick")
SEARCH_PATH_VARIABLE = "CHAINLAB_PATH"
_PACKAGES = (chainlab.runner.experiments, chainlab.runner.configs)


def _extend_search_path() -> None:
    """Add ``$CHAINLAB_PATH/{experiments,configs}`` folders to the two packages."""
    for root in filter(
        None, os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep)
    ):
        for package in _PACKAGES:
            folder = str(Path(root) / package.__name__.rsplit(".", 1)[-1])
            if folder not in package.__path__:
                package.__path__.append(folder)


def list_experiments() -> list[str]:
    """Names of all registered experiments, sorted."""
    _extend_search_path()
    return sorted(
        info.name
        for info in pkgutil.iter_modules(chainlab.runner.experiments.__path__)
        if not info.name.startswith("_")
    )


def check_name(name: str) -> None:
    """Refuse an unknown experiment name, suggesting close matches."""
    names = list_experiments()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ChainlabError(
        f"unknown experiment {name!r}; {hint}available: {', '.join(names)}"
    )


def experiment_module(name: str) -> ModuleType:
    """The module whose ``run(config, workdir)`` is the experiment ``name``."""
    check_name(name)
    return importlib.import_module(f"chainlab.runner.experiments.{name}")


def _config_module(name: str) -> ModuleType:
    check_name(name)
    module_name = f"chainlab.runner.configs.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ChainlabError(f"experiment {name!r} has no configs/{name}.py") from None


def describe(name: str) -> str:
    """The one-line description of an experiment (its module docstring's first line)."""
    doc = experiment_module(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def get_config(
    name: str,
    variant: str = "",
    *,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> ml_collections.ConfigDict:
    """The resolved config: variant, then a JSON config file, then ``overrides``.

    Override values may be strings (parsed by the existing field's type, as ``--set``
    does) or Python values of the right type.
    """
    module = _config_module(name)
    allowed = tuple(getattr(module, "VARIANTS", DEFAULT_VARIANTS))
    if variant not in allowed:
        shown = ", ".join(repr(v) for v in allowed)
        raise ChainlabError(
            f"unknown variant {variant!r} for {name}; allowed: {shown} "
            "('' is the paper-scale default)"
        )
    config = module.get_config(variant)
    if config_file is not None:
        config = apply_overrides(config, load_config_file(config_file))
    return apply_overrides(config, dict(overrides or {}))

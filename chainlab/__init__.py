"""chainlab: the multivariate chain rule as a working tool, in JAX.

Library modules, each one concept, load on first use (``import chainlab`` is cheap):
``chainlab.activations``, ``chainlab.normalization``, ``chainlab.attention``,
``chainlab.losses``, ``chainlab.layers``, ``chainlab.flows``, ``chainlab.regularizers``,
``chainlab.attribution``, ``chainlab.paths``, ``chainlab.robustness``,
``chainlab.embedding``,
``chainlab.regression``, ``chainlab.science``,
``chainlab.gradcheck``, ``chainlab.models``, ``chainlab.data``, ``chainlab.training``
and ``chainlab.compilation``. Experiments run through :func:`chainlab.run`,
:func:`chainlab.reproduce` or the ``chainlab`` command line (``chainlab.runner``).

Example:
  >>> import chainlab
  >>> float(chainlab.activations.relu(-1.0))
  0.0
"""

import importlib
from typing import Any

from chainlab.errors import ChainlabError

__version__ = "0.1.0"

_SUBMODULES = (
    "activations",
    "attention",
    "attribution",
    "compilation",
    "data",
    "embedding",
    "flows",
    "gradcheck",
    "layers",
    "losses",
    "models",
    "normalization",
    "paths",
    "regression",
    "regularizers",
    "robustness",
    "runner",
    "science",
    "training",
    "validation",
)
_RUNNER_FUNCTIONS = ("get_config", "list_experiments", "reproduce", "run")

__all__ = ["ChainlabError", "__version__", *_RUNNER_FUNCTIONS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"chainlab.{name}")
    if name in _RUNNER_FUNCTIONS:
        return getattr(importlib.import_module("chainlab.runner"), name)
    raise AttributeError(f"module 'chainlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

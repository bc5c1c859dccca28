"""chainlab: the multivariate chain rule as a working tool, in JAX.

Library modules (import them directly): ``chainlab.activations``,
``chainlab.normalization``, ``chainlab.attention``, ``chainlab.losses``,
``chainlab.flows``, ``chainlab.regularizers``, ``chainlab.attribution``,
``chainlab.science``, ``chainlab.gradcheck``, and for training ``chainlab.models``,
``chainlab.training`` and ``chainlab.compilation``. Experiments run through
:func:`chainlab.run` or the ``chainlab`` command line.
"""

from chainlab.errors import ChainlabError
from chainlab.experiment import get_config, list_experiments, reproduce, run

__version__ = "0.1.0"

__all__ = [
    "ChainlabError",
    "__version__",
    "get_config",
    "list_experiments",
    "reproduce",
    "run",
]

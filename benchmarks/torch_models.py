"""A chainlab MLP's weights in a ``torch.nn.Sequential``, for the PyTorch benchmarks.

The layers are reached by structure (:func:`chainlab.models.dense_layers`, network
order); Flax kernels are ``(in, out)``, torch weights ``(out, in)``, so each kernel is
transposed. torch is imported on first use: chainlab's own venv does not have it.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from chainlab.models import dense_layers


def torch_mlp(params: Any, activation: Callable[[], Any] | None = None):
    """``Linear -> activation -> ... -> Linear`` holding the MLP's ``params``.

    ``activation`` builds one torch module per hidden layer (default
    ``torch.nn.Tanh``, the activation of :class:`chainlab.models.MLP`).
    """
    import torch

    activation = activation or torch.nn.Tanh
    layers = dense_layers(params)
    modules = []
    for i, layer in enumerate(layers):
        kernel = np.asarray(layer["kernel"])
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(np.array(layer["bias"])))
        modules.append(linear)
        if i < len(layers) - 1:
            modules.append(activation())
    return torch.nn.Sequential(*modules)


def linear_layers(model) -> list:
    """The ``torch.nn.Linear`` modules of a :func:`torch_mlp`, in network order."""
    import torch

    return [module for module in model if isinstance(module, torch.nn.Linear)]

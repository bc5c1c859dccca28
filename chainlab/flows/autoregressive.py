"""Masked autoregressive flows (Papamakarios et al. 2017, "Masked Autoregressive Flow
for Density Estimation") with a MADE conditioner (Germain et al. 2015, "MADE").

An autoregressive layer transforms entry ``i`` of ``x`` by an invertible scalar map
whose parameters depend on the entries before it only, ``theta_i = NN(x_{<i}, c)``:

- forward (data to latent, the density): ``z_i = tau(x_i; theta_i(x_{<i}))``, all
  entries at once from one network pass; the Jacobian ``dz/dx`` is lower triangular,
  so ``log|det dz/dx| = sum_i log|d tau / d x_i|``;
- inverse (sampling): ``x_i = tau^{-1}(z_i; theta_i(x_{<i}))`` needs ``x_{<i}``
  first, so ``D`` passes: after pass ``p`` the entries ``0 .. p - 1`` are exact.

MADE makes one fully connected network autoregressive by masking its weights: input
``i`` has rank ``i``, the context rank ``-1``, hidden units ranks in between; a hidden
unit sees the units of rank at most its own, and output ``i`` those of rank below
``i``. ``tau`` is affine (``z = x exp(s) + t``, ``s = a tanh(r)``) or a
rational-quadratic spline (:func:`~chainlab.flows.rational_quadratic_spline`).
"""

from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from chainlab.flows._util import check_context, check_event
from chainlab.flows.bijection import Bijection
from chainlab.flows.conditioners import Conditioner
from chainlab.flows.coupling import affine_transform, tanh_log_scale
from chainlab.flows.spline import check_spline, spline_outputs, spline_transform
from chainlab.validation import check_at_least, check_choice

__all__ = ["made_conditioner", "masked_autoregressive"]

Activation = Callable[[jax.Array], jax.Array]
TRANSFORMERS = ("affine", "spline")


def _ranks(dim: int, hidden: Sequence[int], context_dim: int) -> list[np.ndarray]:
    """Ranks of the inputs (data, then context), of each hidden layer's units."""
    inputs = np.concatenate([np.arange(dim), np.full(context_dim, -1)])
    if context_dim:  # ranks -1 .. dim - 2: some units carry the context alone
        layers = [np.arange(width) % dim - 1 for width in hidden]
    else:  # ranks 0 .. dim - 2
        layers = [np.arange(width) % max(dim - 1, 1) for width in hidden]
    return [inputs, *layers]


def made_masks(
    dim: int, hidden: Sequence[int], outputs: int, context_dim: int = 0
) -> list[np.ndarray]:
    """MADE's 0/1 weight masks ``(fan_in, fan_out)``, one per layer.

    Output unit ``j * dim + i`` (number ``j`` of entry ``i``) has rank ``i``.
    """
    ranks = _ranks(dim, hidden, context_dim)
    out = np.tile(np.arange(dim), outputs)
    masks = [
        r_out[None, :] >= r_in[:, None]
        for r_in, r_out in zip(ranks[:-1], ranks[1:], strict=True)
    ]
    masks.append(out[None, :] > ranks[-1][:, None])
    return [m.astype(np.float32) for m in masks]


def made_conditioner(
    dim: int,
    hidden: Sequence[int],
    *,
    activation: Activation = jax.nn.relu,
    outputs: int = 2,
    context_dim: int = 0,
) -> Conditioner:
    """A MADE network ``(n, dim) -> (n, dim, outputs)``, autoregressive in the order
    ``0, 1, ..., dim - 1``: ``out[:, i]`` depends on ``x[:, :i]`` (and the context)
    only.

    Layers ``dim + context_dim -> hidden[0] -> ... -> outputs * dim`` with masked
    weights (LeCun-normal, then masked; the masks are fixed structure, not params)
    and a zero-initialised output layer.

    Args:
      dim: size of the input vectors.
      hidden: the hidden layers' widths (each at least ``dim - 1``, so every rank
        has a unit, or ``dim`` with a context).
      activation: the nonlinearity between layers.
      outputs: numbers per entry.
      context_dim: size of the context vector (0: unconditional).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = made_conditioner(3, (8,), outputs=1)
      >>> params = jax.tree.map(lambda p: p + 1.0, net.init(jax.random.key(0)))
      >>> jac = jax.jacfwd(lambda x: net.apply(params, x[None])[0, :, 0])(jnp.ones(3))
      >>> (jnp.abs(jac) > 0).astype(int).tolist()  # strictly lower triangular
      [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    """
    check_at_least("dim", dim, 1)
    check_at_least("outputs", outputs, 1)
    check_at_least("context_dim", context_dim, 0)
    widths = tuple(hidden)
    for width in widths:
        check_at_least("hidden widths", width, max(dim - (context_dim == 0), 1))
    masks = [jnp.asarray(m) for m in made_masks(dim, widths, outputs, context_dim)]
    sizes = (dim + context_dim, *widths, outputs * dim)
    dtype = jnp.result_type(float)

    def init(key):
        keys = jax.random.split(key, len(widths))
        normal = jax.nn.initializers.lecun_normal()
        layers = [
            {"w": normal(k, (fan_in, fan_out), dtype), "b": jnp.zeros(fan_out, dtype)}
            for k, fan_in, fan_out in zip(keys, sizes[:-2], sizes[1:-1], strict=True)
        ]
        last = {"w": jnp.zeros(sizes[-2:], dtype), "b": jnp.zeros(sizes[-1], dtype)}
        return [*layers, last]

    def apply(params, x, context=None):
        context = check_context(context, x.shape[0], context_dim, "made_conditioner")
        h = x if context is None else jnp.concatenate([x, context.astype(x.dtype)], 1)
        for k, (layer, mask) in enumerate(zip(params, masks, strict=True)):
            h = h @ (layer["w"] * mask.astype(h.dtype)) + layer["b"][None, :]
            if k < len(masks) - 1:
                h = activation(h)
        return jnp.swapaxes(jnp.reshape(h, (-1, outputs, dim)), 1, 2)

    return Conditioner(init, apply, outputs, context_dim)


def masked_autoregressive(
    dim: int,
    *,
    hidden: Sequence[int] = (64, 64),
    transformer: Literal["affine", "spline"] = "affine",
    bins: int = 8,
    bound: float = 4.0,
    activation: Activation = jax.nn.relu,
    context_dim: int = 0,
) -> Bijection:
    """A masked autoregressive layer on vectors ``(n, dim)``, entry ``i`` given
    ``x_{<i}``.

    forward (density): ``z_i = tau(x_i; NN(x_{<i}, c)_i)``, one pass of a
    :func:`made_conditioner`, ``log|det dz/dx| = sum_i log|d tau / d x_i|``; inverse
    (sampling): ``dim`` passes, each fixing one more entry.

    Args:
      dim: data dimension.
      hidden: the MADE network's hidden widths.
      transformer: ``"affine"`` (``tau(x) = x exp(a tanh r) + t``) or ``"spline"``
        (rational-quadratic, ``bins`` bins on ``[-bound, bound]``, identity outside).
      bins: spline bins.
      bound: half-width of the splines' interval.
      activation: the network's nonlinearity.
      context_dim: size of a context vector the network sees (0: unconditional;
        otherwise the layer is conditional and its functions take the context).

    ``params = {"net": MADE params}``, plus ``"scale": a`` ``(dim,)`` for the affine
    transformer. A new layer is the identity.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = masked_autoregressive(3, hidden=(8,))
      >>> params = jax.tree.map(lambda p: p + 0.1, layer.init(jax.random.key(0)))
      >>> x = jnp.array([[0.5, -1.0, 2.0]])
      >>> z, logdet = layer.forward(params, x)
      >>> x_back, logdet_back = layer.inverse(params, z)
      >>> bool(jnp.allclose(x_back, x, atol=1e-5))
      True
      >>> bool(jnp.allclose(logdet, -logdet_back))
      True
    """
    check_at_least("dim", dim, 1)
    check_choice("transformer", transformer, TRANSFORMERS)
    if transformer == "spline":
        check_spline(bins, bound)
    outputs = 2 if transformer == "affine" else spline_outputs(bins)
    net = made_conditioner(
        dim, hidden, activation=activation, outputs=outputs, context_dim=context_dim
    )

    def init(key):
        params = {"net": net.init(key)}
        if transformer == "affine":
            params["scale"] = jnp.ones((dim,), jnp.result_type(float))
        return params

    def _transform(params, x, source, context, inverse):
        """``tau`` (or its inverse) on ``x`` with parameters from ``net(source)``."""
        out = net.apply(params["net"], source, context)
        if transformer == "affine":
            log_scale = tanh_log_scale(params["scale"][None], out[..., 1])
            return affine_transform(log_scale, out, x, inverse)
        return spline_transform(out, x, bins=bins, bound=bound, inverse=inverse)

    def forward(params, x, context=None):
        check_event(x, (dim,), "masked_autoregressive")
        z, log_derivative = _transform(params, x, x, context, False)
        return z, jnp.sum(log_derivative, axis=1)

    def inverse(params, z, context=None):
        check_event(z, (dim,), "masked_autoregressive")

        def one_pass(_, x):
            return _transform(params, z, x, context, True)[0]

        # Pass p fixes entry p - 1; the last pass (outside the loop) also gives the
        # log-determinant, from parameters that are all exact by then.
        x = jax.lax.fori_loop(0, dim - 1, one_pass, z)
        x, log_derivative = _transform(params, z, x, context, True)
        return x, jnp.sum(log_derivative, axis=1)

    return Bijection(init, forward, inverse, conditional=context_dim > 0)

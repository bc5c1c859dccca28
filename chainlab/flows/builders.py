"""Ready-made flows: RealNVP, neural spline flows and MAF for vectors, and a
Glow-style multi-scale flow for images.

- ``realnvp`` (Dinh et al. 2017): ``num_layers`` affine couplings with MLP conditioners,
  alternating which half of the coordinates is transformed, composed by ``scan``.
- ``neural_spline_flow`` (Durkan et al. 2019): the same with rational-quadratic spline
  couplings.
- ``maf`` (Papamakarios et al. 2017): masked autoregressive layers, the order reversed
  between layers.
- ``glow`` (Kingma & Dhariwal 2018): per scale, a squeeze and ``steps`` of
  ``actnorm -> invertible 1x1 conv -> affine coupling`` (channel mask, convolutional
  conditioner), then half of the channels is factored out before the next scale.

All accept ``preprocess``, a fixed bijection applied first (``standardize``,
``logit``), whose log-det enters ``log_prob`` so densities are on the raw data scale,
and ``context_dim``: with ``context_dim > 0`` every conditioner also sees a context
vector and the flow is the conditional density ``p(x | context)``.
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chainlab.flows.actnorm import actnorm
from chainlab.flows.autoregressive import TRANSFORMERS, masked_autoregressive
from chainlab.flows.bijection import Bijection, chain, scan
from chainlab.flows.conditioners import conv_conditioner, mlp_conditioner
from chainlab.flows.coupling import affine_coupling
from chainlab.flows.flow import Flow, transformed
from chainlab.flows.linear import invertible_linear
from chainlab.flows.masks import alternating_mask, channel_mask, half_mask
from chainlab.flows.multiscale import factor_out
from chainlab.flows.permutation import permutation, reverse
from chainlab.flows.reshape import squeeze, unsqueeze
from chainlab.flows.spline import spline_coupling, spline_outputs
from chainlab.validation import check_at_least, check_choice

__all__ = ["glow", "maf", "neural_spline_flow", "realnvp"]

_MASKS = {"half": half_mask, "alternating": alternating_mask}
Activation = Callable[[jax.Array], jax.Array]


def _alternating(dim: int, num_layers: int, mask: str) -> np.ndarray:
    check_at_least("dim", dim, 2)
    check_at_least("num_layers", num_layers, 1)
    check_choice("mask", mask, _MASKS)
    return np.stack([_MASKS[mask](dim, flip=k % 2 == 1) for k in range(num_layers)])


def realnvp(
    dim: int,
    *,
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    mask: Literal["half", "alternating"] = "half",
    activation: Activation = jax.nn.relu,
    scale: str = "softplus",
    preprocess: Bijection | None = None,
    context_dim: int = 0,
) -> Flow:
    """RealNVP on vectors: affine couplings with alternating masks.

    Layer ``k`` keeps the entries where ``mask_k = 1`` and transforms the others,
    forward ``y = x * exp(s(x_kept)) + t(x_kept)``, inverse
    ``x = (y - t(y_kept)) * exp(-s(y_kept))`` (``y_kept = x_kept``), with the
    log-scale ``s`` from the network's raw output by ``scale`` (see
    :func:`~chainlab.flows.affine_coupling`: a softplus scale floored at 0.01, or a
    learned tanh bound); ``mask_k`` flips every layer, so each coordinate is
    transformed ``num_layers / 2`` times. ``log p(x) = log N(z; 0, I) + sum_k sum(s_k)``
    with ``z`` the output of the last layer. A new flow is the identity
    (zero-initialised output layers; the hidden layers start uniform, see
    :func:`~chainlab.flows.mlp_conditioner`).

    Args:
      dim: data dimension (>= 2).
      num_layers: number of coupling layers.
      hidden: hidden widths of each coupling's MLP conditioner.
      mask: ``"half"`` (first/second half) or ``"alternating"`` (even/odd entries).
      activation: the conditioners' nonlinearity.
      scale: the couplings' log-scale, ``"softplus"`` or ``"tanh"``.
      preprocess: a fixed bijection on ``(n, dim)`` applied before the couplings.
      context_dim: size of a context vector every conditioner sees beside the kept
        entries (0: unconditional); the flow is then ``p(x | context)``.

    ``params`` are the couplings' parameters stacked along a leading layer axis (see
    :func:`~chainlab.flows.scan`); with ``preprocess``, the pair ``(preprocess's
    params, stacked couplings' params)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> flow = realnvp(2, num_layers=4, hidden=(16,))
      >>> params = flow.init(jax.random.key(0))
      >>> round(float(flow.log_prob(params, jnp.zeros((1, 2)))[0]), 4)
      -1.8379
      >>> flow.sample(params, jax.random.key(1), 5).shape
      (5, 2)
    """
    masks = _alternating(dim, num_layers, mask)
    conditioner = mlp_conditioner(
        dim, tuple(hidden), activation=activation, context_dim=context_dim
    )
    body = scan(
        lambda m: affine_coupling(m, conditioner, scale=scale), jnp.asarray(masks)
    )
    if preprocess is not None:
        body = chain(preprocess, body)
    return transformed(body, (dim,), context_dim=context_dim)


def neural_spline_flow(
    dim: int,
    *,
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    bound: float = 4.0,
    mask: Literal["half", "alternating"] = "half",
    activation: Activation = jax.nn.relu,
    preprocess: Bijection | None = None,
    context_dim: int = 0,
) -> Flow:
    """A coupling flow of rational-quadratic splines (Durkan et al. 2019, "Neural
    Spline Flows").

    As :func:`realnvp` with :func:`~chainlab.flows.spline_coupling` layers: a layer
    passes the entries where ``mask = 1`` through and maps each other entry by a
    monotonic spline with ``bins`` bins on ``[-bound, bound]`` (identity outside)
    whose knots an MLP computes from the kept entries; the entries it transformed
    are kept by the next layer. ``log p(x) = log N(z; 0, I) + sum_k sum_i log|d y_i
    / d x_i|``. A new flow only permutes the entries (volume preserving).

    Args:
      dim: data dimension (>= 2).
      num_layers: number of coupling layers.
      hidden: hidden widths of each coupling's MLP conditioner.
      bins: spline bins ``K`` (the conditioner gives ``3K - 1`` numbers per entry).
      bound: half-width ``B`` of the splines' interval; data should lie mostly
        inside (``preprocess=standardize(...)`` helps).
      mask: ``"half"`` (first/second half) or ``"alternating"`` (even/odd entries).
      activation: the conditioners' nonlinearity.
      preprocess: a fixed bijection on ``(n, dim)`` applied before the couplings.
      context_dim: size of a context vector every conditioner sees (0:
        unconditional); the flow is then ``p(x | context)``.

    Each layer is the coupling with the first mask followed by a fixed permutation
    that moves the entries it transformed to the places it kept (for even ``dim``
    the same as flipping the mask). ``params`` are the layers' parameters stacked
    along a leading layer axis, as :func:`realnvp`'s.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> flow = neural_spline_flow(2, num_layers=2, hidden=(8,), bins=4)
      >>> params = flow.init(jax.random.key(0))
      >>> round(float(flow.log_prob(params, jnp.zeros((1, 2)))[0]), 4)
      -1.8379
    """
    mask_values = _alternating(dim, num_layers, mask)[0]
    conditioner = mlp_conditioner(
        dim,
        tuple(hidden),
        activation=activation,
        outputs=spline_outputs(bins),
        context_dim=context_dim,
    )
    # Every layer has the same concrete mask, so its splines run on the transformed
    # entries only, followed by the permutation that moves the entries it
    # transformed to the kept places: the next layer's mask is in effect flipped.
    kept, changed = np.flatnonzero(mask_values), np.flatnonzero(mask_values == 0)
    order = np.empty(dim, int)
    order[np.concatenate([kept, changed])] = np.concatenate([changed, kept])
    layer = chain(
        spline_coupling(mask_values, conditioner, bins=bins, bound=bound),
        permutation(order),
    )
    body = scan(lambda _: layer, jnp.arange(num_layers))
    if preprocess is not None:
        body = chain(preprocess, body)
    return transformed(body, (dim,), context_dim=context_dim)


def maf(
    dim: int,
    *,
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    transformer: Literal["affine", "spline"] = "affine",
    bins: int = 8,
    bound: float = 4.0,
    activation: Activation = jax.nn.relu,
    preprocess: Bijection | None = None,
    context_dim: int = 0,
) -> Flow:
    """A masked autoregressive flow (Papamakarios et al. 2017, "MAF").

    ``num_layers`` :func:`~chainlab.flows.masked_autoregressive` layers, each followed
    by reversing the entries, so consecutive layers condition in opposite orders.
    ``log_prob`` costs one network pass per layer; ``sample`` costs ``dim`` passes
    per layer. A new flow is the identity up to the reversals.

    Args:
      dim: data dimension (>= 2).
      num_layers: number of autoregressive layers.
      hidden: hidden widths of each layer's MADE network.
      transformer: ``"affine"`` or ``"spline"`` (rational-quadratic).
      bins: spline bins.
      bound: half-width of the splines' interval.
      activation: the networks' nonlinearity.
      preprocess: a fixed bijection on ``(n, dim)`` applied before the layers.
      context_dim: size of a context vector every network sees (0: unconditional);
        the flow is then ``p(x | context)``.

    ``params`` are the layers' parameters stacked along a leading layer axis (each
    layer a pair: the autoregressive layer's and the reversal's empty params); with
    ``preprocess``, the pair ``(preprocess's params, stacked layers' params)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> flow = maf(3, num_layers=2, hidden=(8,), context_dim=1)
      >>> params = flow.init(jax.random.key(0))
      >>> flow.log_prob(params, jnp.zeros((4, 3)), jnp.ones((4, 1))).shape
      (4,)
      >>> flow.sample(params, jax.random.key(1), 5, jnp.array([0.5])).shape
      (5, 3)
    """
    check_at_least("dim", dim, 2)
    check_at_least("num_layers", num_layers, 1)
    layer = chain(
        masked_autoregressive(
            dim,
            hidden=tuple(hidden),
            transformer=transformer,
            bins=bins,
            bound=bound,
            activation=activation,
            context_dim=context_dim,
        ),
        reverse(dim),
    )
    body = scan(lambda _: layer, jnp.arange(num_layers))
    if preprocess is not None:
        body = chain(preprocess, body)
    return transformed(body, (dim,), context_dim=context_dim)


# make(mask, (h, w, c)) -> the coupling of one Glow step, or of a split's prior.
MakeCoupling = Callable[[jax.Array, tuple[int, int, int]], Bijection]


class _GlowCouplings(NamedTuple):
    step: MakeCoupling  # affine or spline
    prior: MakeCoupling  # always affine: a conditional Gaussian for the split half


def _glow_couplings(
    hidden: int, context_dim: int, scale: str, transformer: str, bins: int, bound: float
) -> _GlowCouplings:
    """The makers of a Glow's couplings: the steps' are affine or splines, the prior
    before a split is always affine."""

    def conditioner(shape, outputs):
        height, width, channels = shape
        # On a single pixel a k x k convolution with 'SAME' padding only uses its
        # centre.
        kernel_size = 1 if height == width == 1 else 3
        return conv_conditioner(
            channels,
            hidden,
            kernel_size=kernel_size,
            outputs=outputs,
            context_dim=context_dim,
        )

    def affine(mask, shape):
        return affine_coupling(mask, conditioner(shape, 2), scale=scale)

    def spline(mask, shape):
        net = conditioner(shape, spline_outputs(bins))
        return spline_coupling(mask, net, bins=bins, bound=bound)

    return _GlowCouplings(spline if transformer == "spline" else affine, affine)


def _glow_step(shape, coupling: MakeCoupling) -> Bijection:
    channels = shape[2]
    return chain(
        actnorm(channels),
        invertible_linear(channels),
        coupling(channel_mask(*shape), shape),
    )


def _glow_scale(shape, levels: int, steps: int, couplings: _GlowCouplings) -> Bijection:
    height, width, channels = shape
    inner_shape = (height // 2, width // 2, 4 * channels)
    step = _glow_step(inner_shape, couplings.step)
    # Unrolled: the backward pass of a rolled scan over convolutions is 3x slower
    # on the CPU (see scan).
    parts = [squeeze(), scan(lambda _: step, jnp.arange(steps), unroll=True)]
    if levels > 1:
        # Glow's learned prior for the factored-out half, as a coupling that moves
        # and scales the first half of the channels given the second.
        split_prior = couplings.prior(
            channel_mask(*inner_shape, flip=True), inner_shape
        )
        h, w, c = inner_shape
        inner = _glow_scale((h, w, c // 2), levels - 1, steps, couplings)
        parts += [split_prior, factor_out(inner)]
    parts.append(unsqueeze())
    return chain(*parts)


def glow(
    image_shape: Sequence[int],
    *,
    levels: int = 2,
    steps: int = 4,
    hidden: int = 64,
    scale: str = "tanh",
    transformer: Literal["affine", "spline"] = "affine",
    bins: int = 8,
    bound: float = 4.0,
    preprocess: Bijection | None = None,
    context_dim: int = 0,
) -> Flow:
    """A Glow-style multi-scale flow on images ``(n, height, width, channels)``.

    Each of the ``levels`` scales squeezes (``(h, w, c) -> (h/2, w/2, 4c)``), applies
    ``steps`` Glow steps ``actnorm -> invertible_linear -> affine_coupling`` (channel
    mask, convolutional conditioner with ``hidden`` channels; 3x3 kernels, 1x1 once the
    image is a single pixel), and, except at the last
    scale, factors out half of its channels as latent. Before each split, one more
    coupling transforms the half that leaves given the half that stays: Glow's learned
    conditional prior ``z_out ~ N(mu(z_stay), sigma(z_stay)^2)`` written as a
    bijection, so the base stays a standard normal. The latent has the image's shape.
    Call ``flow.initialize(params, batch)`` once before training to run ActNorm's
    data-dependent initialisation.

    Args:
      image_shape: ``(height, width, channels)``; height and width divisible by
        ``2 ** levels``.
      levels: number of scales.
      steps: Glow steps per scale.
      hidden: channels of the conditioners' hidden layers.
      scale: the affine couplings' log-scale (see
        :func:`~chainlab.flows.affine_coupling`): ``"tanh"``, a learned bound (the
        digits recipe's), or ``"softplus"``.
      transformer: the steps' couplings, ``"affine"`` or ``"spline"``
        (:func:`~chainlab.flows.spline_coupling` with ``bins`` bins on ``[-bound,
        bound]``; the prior before each split stays affine).
      bins: spline bins.
      bound: half-width of the splines' interval (ActNorm keeps a step's input near
        unit scale).
      preprocess: a fixed bijection on images applied first (e.g. ``logit``).
      context_dim: size of a context vector (e.g. a one-hot class) that every
        conditioner sees, broadcast over the pixels (0: unconditional); the flow is
        then ``p(image | context)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> flow = glow((4, 4, 1), levels=2, steps=1, hidden=4)
      >>> params = flow.init(jax.random.key(0))
      >>> x = jax.random.normal(jax.random.key(1), (6, 4, 4, 1))
      >>> params = jax.jit(flow.initialize)(params, x)  # jit: one program, not many ops
      >>> jax.jit(flow.log_prob)(params, x).shape
      (6,)
      >>> jax.jit(flow.sample, static_argnums=2)(params, jax.random.key(2), 3).shape
      (3, 4, 4, 1)
    """
    image_shape = tuple(image_shape)
    if len(image_shape) != 3:
        raise ValueError(
            f"image_shape must be (height, width, channels), got {image_shape}"
        )
    for name, value in (("levels", levels), ("steps", steps), ("hidden", hidden)):
        check_at_least(name, value, 1)
    height, width, _ = image_shape
    if height % 2**levels or width % 2**levels:
        raise ValueError(
            f"height and width must be divisible by 2**levels = {2**levels}, "
            f"got {image_shape}"
        )
    check_at_least("context_dim", context_dim, 0)
    check_choice("transformer", transformer, TRANSFORMERS)
    couplings = _glow_couplings(hidden, context_dim, scale, transformer, bins, bound)
    body = _glow_scale(image_shape, levels, steps, couplings)
    if preprocess is not None:
        body = chain(preprocess, body)
    return transformed(body, image_shape, context_dim=context_dim)

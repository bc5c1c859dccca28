"""Batch, instance and layer normalization as pure functions; how they couple samples.

All three layers compute ``y = scale * (x - mean) / sqrt(var + eps) + offset`` per
channel (the last axis); they differ only in which axes the statistics run over:

=============  ==========================================  =====================
layer          statistics over                             couples samples?
=============  ==========================================  =====================
batch norm     every axis but the last (batch and space)   yes
instance norm  the spatial axes of each sample             no
layer norm     the last axis of each row                   no
=============  ==========================================  =====================

The variance is the biased one (divide by the count) and ``eps`` sits inside the square
root, as in Ioffe & Szegedy (2015), Flax and PyTorch. Because batch statistics depend on
every sample, a batch-norm output of sample ``a`` depends on the input of sample ``b``:
``cross_sample_jacobian`` measures exactly that coupling with ``jax.jacrev``. For a
``(N, C)`` input, with ``s = sqrt(var + eps)`` and ``xhat = (x - mean) / s``, the chain
rule gives the block

    dy[a, c] / dx[b, c'] = delta(c, c') * scale[c] / s[c]
                           * (delta(a, b) - 1/N - xhat[a, c] * xhat[b, c] / N),

which is non-zero for ``a != b``. Two consequences, used by the ``norm_coupling``
experiment: for any upstream gradient ``g = dL/dy``, per channel, the input gradient
``dL/dx`` sums to zero over the batch, and ``sum_b dL/dx[b] xhat[b] =
(scale / s) * (eps / (var + eps)) * sum_a g[a] xhat[a]``, so it is orthogonal to
``xhat`` exactly when ``eps = 0`` (and nearly so for ``eps << var``).
``batch_norm_jacobian`` evaluates the closed form (for any ``(N, ..., C)`` input, with
the ``M`` positions of a channel in place of ``N``), and
``batch_norm_grad_identities`` measures both identities for one upstream gradient.

Per-example gradients (for clipping, importance weights, influence) are not defined by
the batch model alone once samples are coupled: ``per_example_grads`` computes the
three usual decompositions (``jax.jacrev`` of the per-example losses, ``vmap(grad)``
over batches of one, and ``vmap(grad)`` with the statistics shared over a named axis);
``per_example_decompositions`` computes all three with the batch gradient.

Inference uses running averages of the batch statistics instead. They are explicit
state: ``BatchNormState`` (a NamedTuple), updated by the pure ``update_running_stats``
and consumed by ``batch_norm_inference``; nothing is mutated.

``eps >= 0`` and ``0 <= momentum < 1`` are checked whenever they are concrete (``eps =
0`` is allowed: the exact normalization, defined while the variance is positive); a
value traced under ``jax.jit`` is not checked (see :mod:`chainlab.validation`). Shapes
are checked at trace time, under ``jit`` too.

Reference: S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015; D. Ulyanov et al., "Instance
Normalization", arXiv:1607.08022; J. L. Ba et al., "Layer Normalization",
arXiv:1607.06450.
"""

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_in_range,
    check_nonnegative,
    check_rank,
    check_shape,
)

__all__ = [
    "BatchNormGradIdentities",
    "BatchNormState",
    "PerExampleDecompositions",
    "batch_norm",
    "batch_norm_grad_identities",
    "batch_norm_inference",
    "batch_norm_jacobian",
    "batch_norm_stats",
    "cross_sample_block_norms",
    "cross_sample_jacobian",
    "init_batch_norm_state",
    "instance_norm",
    "layer_norm",
    "per_example_decompositions",
    "per_example_grads",
    "random_affine",
    "update_running_stats",
]


def _affine_inputs(
    x: ArrayLike, scale: ArrayLike, offset: ArrayLike, eps: ArrayLike, *, min_rank: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x ``(..., C)`` with at least ``min_rank`` axes, per-channel scale and offset."""
    x = as_real_float("x", x)
    check_shape("x", x, (None,) * (min_rank - 1) + (..., None))
    channels = x.shape[-1:]
    scale = as_real_float("scale", scale)
    offset = as_real_float("offset", offset)
    check_shape("scale", scale, channels)
    check_shape("offset", offset, channels)
    check_rank("eps", eps, 0)
    check_nonnegative("eps", eps)
    return x, scale, offset


def _normalize(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array,
    offset: jax.Array,
    eps: float,
) -> jax.Array:
    # mean and var keep the reduced axes (keepdims), so they broadcast at equal rank;
    # scale and offset are (C,) and are reshaped to x's rank explicitly.
    shape = (1,) * (x.ndim - 1) + (x.shape[-1],)
    xhat = (x - mean) * jax.lax.rsqrt(var + eps)
    return xhat * scale.reshape(shape) + offset.reshape(shape)


def _moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    # Biased variance from the centred values (no E[x^2] - E[x]^2 cancellation).
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return mean, var


def _batch_moments(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    # Local statistics over every axis but the last, then (with axis_name) averaged
    # over the named vmap/shard_map axis: every lane holds the same count, so the mean
    # of the local means is the global mean, and likewise for the centred squares.
    axes = tuple(range(x.ndim - 1))
    if axis_name is None:
        return _moments(x, axes)
    mean = jax.lax.pmean(jnp.mean(x, axis=axes, keepdims=True), axis_name)
    sq = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return mean, jax.lax.pmean(sq, axis_name)


def batch_norm(
    x: ArrayLike,
    scale: ArrayLike,
    offset: ArrayLike,
    *,
    eps: float = 1e-5,
    axis_name: str | None = None,
) -> jax.Array:
    """Batch normalization with training-mode (batch) statistics.

    For ``x`` of shape ``(N, ..., C)`` and each channel ``c``,

        y = scale[c] * (x - mu[c]) / sqrt(var[c] + eps) + offset[c],

    with ``mu`` and the biased ``var`` taken over every axis but the last (the batch and
    any spatial axes). The output of one sample therefore depends on all the others; see
    ``cross_sample_jacobian``. Reference: Ioffe & Szegedy, ICML 2015.

    With ``axis_name``, the statistics are also averaged over that named axis of an
    enclosing ``jax.vmap`` or ``shard_map`` (as Flax's ``BatchNorm(axis_name=...)``), so
    ``vmap(f, axis_name="batch")`` of a per-example ``f`` sees the batch statistics.

    Args:
        x: array of shape ``(N, ..., C)``, at least 2-D; without a local batch axis,
            ``(..., C)``, when ``axis_name`` supplies the batch.
        scale: per-channel gain, shape ``(C,)``.
        offset: per-channel bias, shape ``(C,)``.
        eps: added to the variance inside the square root, ``>= 0`` (checked when
            concrete; not under ``jit``).
        axis_name: a named mapped axis to share the statistics over, or ``None``.

    Returns:
        Array of the shape of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0], [3.0]])
        >>> y = batch_norm(x, jnp.ones(1), jnp.zeros(1), eps=0.0)
        >>> [round(float(v), 4) for v in y[:, 0]]
        [-1.0, 1.0]
    """
    min_rank = 1 if axis_name else 2
    x, scale, offset = _affine_inputs(x, scale, offset, eps, min_rank=min_rank)
    mean, var = _batch_moments(x, axis_name)
    return _normalize(x, mean, var, scale, offset, eps)


def instance_norm(
    x: ArrayLike, scale: ArrayLike, offset: ArrayLike, *, eps: float = 1e-5
) -> jax.Array:
    """Instance normalization: statistics over the spatial axes of each sample.

    For ``x`` of shape ``(N, *spatial, C)``, each sample ``n`` and channel ``c`` is
    normalized with the mean and biased variance of ``x[n, ..., c]`` over the spatial
    axes, then scaled and shifted per channel. Samples never interact. Reference:
    Ulyanov, Vedaldi & Lempitsky, arXiv:1607.08022.

    Args:
        x: array of shape ``(N, *spatial, C)`` with at least one spatial axis.
        scale: per-channel gain, shape ``(C,)``.
        offset: per-channel bias, shape ``(C,)``.
        eps: added to the variance inside the square root.

    Returns:
        Array of the shape of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[[0.0], [2.0]], [[5.0], [5.0]]])  # (N=2, L=2, C=1)
        >>> y = instance_norm(x, jnp.ones(1), jnp.zeros(1), eps=0.0)
        >>> [round(float(v), 4) for v in y[0, :, 0]]
        [-1.0, 1.0]
    """
    x, scale, offset = _affine_inputs(x, scale, offset, eps, min_rank=3)
    mean, var = _moments(x, tuple(range(1, x.ndim - 1)))
    return _normalize(x, mean, var, scale, offset, eps)


def layer_norm(
    x: ArrayLike, scale: ArrayLike, offset: ArrayLike, *, eps: float = 1e-5
) -> jax.Array:
    """Layer normalization: statistics over the last axis of each row.

    ``y = scale * (x - mean(x)) / sqrt(var(x) + eps) + offset`` with the mean and biased
    variance over the last axis only, so every row (every sample) is normalized on its
    own. Reference: Ba, Kiros & Hinton, arXiv:1607.06450.

    Args:
        x: array of shape ``(..., C)``, at least 1-D.
        scale: gain, shape ``(C,)``.
        offset: bias, shape ``(C,)``.
        eps: added to the variance inside the square root.

    Returns:
        Array of the shape of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = layer_norm(jnp.array([1.0, 3.0]), jnp.ones(2), jnp.zeros(2), eps=0.0)
        >>> [round(float(v), 4) for v in y]
        [-1.0, 1.0]
    """
    x, scale, offset = _affine_inputs(x, scale, offset, eps, min_rank=1)
    mean, var = _moments(x, (x.ndim - 1,))
    return _normalize(x, mean, var, scale, offset, eps)


def random_affine(
    key: jax.Array, num_channels: int, *, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """Random per-channel ``(scale, offset)`` of a normalization layer, for checks.

    ``scale ~ U[0.5, 2]`` and ``offset ~ N(0, 1)`` independently per channel: away
    from the identity (``scale = 1``, ``offset = 0``), which would hide a wrong
    placement of either, and with ``scale`` clear of 0.

    Example:
        >>> import jax
        >>> scale, offset = random_affine(jax.random.key(0), 3)
        >>> scale.shape, bool(scale.min() >= 0.5), offset.shape
        ((3,), True, (3,))
    """
    check_at_least("num_channels", num_channels, 1)
    ks, ko = jax.random.split(key)
    scale = jax.random.uniform(ks, (num_channels,), dtype, 0.5, 2.0)
    return scale, jax.random.normal(ko, (num_channels,), dtype)


class BatchNormState(NamedTuple):
    """Running averages of the batch statistics, used by ``batch_norm_inference``.

    Attributes:
        mean: running mean per channel, shape ``(C,)``.
        var: running biased variance per channel, shape ``(C,)``.
    """

    mean: jax.Array
    var: jax.Array


def init_batch_norm_state(num_channels: int, *, dtype=jnp.float32) -> BatchNormState:
    """Initial running statistics: mean 0 and variance 1 per channel (as Flax, PyTorch).

    Example:
        >>> init_batch_norm_state(3).var.tolist()
        [1.0, 1.0, 1.0]
    """
    check_at_least("num_channels", num_channels, 1)
    return BatchNormState(
        mean=jnp.zeros((num_channels,), dtype), var=jnp.ones((num_channels,), dtype)
    )


def batch_norm_stats(
    x: ArrayLike, *, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """Per-channel batch mean and biased variance of ``x`` ``(N, ..., C)``, each (C,).

    These are the statistics ``batch_norm`` uses in training mode (``axis_name`` as
    there).

    Example:
        >>> import jax.numpy as jnp
        >>> mean, var = batch_norm_stats(jnp.array([[1.0], [3.0]]))
        >>> float(mean[0]), float(var[0])
        (2.0, 1.0)
    """
    x = as_real_float("x", x)
    check_shape("x", x, (None,) * (1 if axis_name else 2) + (...,))
    mean, var = _batch_moments(x, axis_name)
    return mean.reshape(-1), var.reshape(-1)


def update_running_stats(
    state: BatchNormState,
    x: ArrayLike,
    *,
    momentum: float = 0.99,
    axis_name: str | None = None,
) -> BatchNormState:
    """One exponential-moving-average step of the running statistics (pure).

        mean <- momentum * mean + (1 - momentum) * batch_mean(x)
        var  <- momentum * var  + (1 - momentum) * batch_var(x)

    with the biased batch variance, as Flax's ``BatchNorm`` (PyTorch averages the
    unbiased variance instead). The running statistics are buffers, not parameters: no
    gradient flows through this update (``stop_gradient``).

    Args:
        state: the current ``BatchNormState``.
        x: a training batch ``(N, ..., C)``.
        momentum: weight of the old value, in ``[0, 1)`` (checked when concrete; not
            under ``jit``).
        axis_name: as in ``batch_norm``.

    Returns:
        The new ``BatchNormState``; ``state`` itself is unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> state = init_batch_norm_state(1)
        >>> state = update_running_stats(state, jnp.array([[1.0], [3.0]]), momentum=0.5)
        >>> float(state.mean[0]), float(state.var[0])
        (1.0, 1.0)
    """
    check_in_range("momentum", momentum, 0, 1)
    x = jax.lax.stop_gradient(as_real_float("x", x))
    check_shape("x", x, (..., state.mean.shape[0]))
    mean, var = batch_norm_stats(x, axis_name=axis_name)
    return BatchNormState(
        mean=momentum * state.mean + (1.0 - momentum) * mean,
        var=momentum * state.var + (1.0 - momentum) * var,
    )


def batch_norm_inference(
    x: ArrayLike,
    state: BatchNormState,
    scale: ArrayLike,
    offset: ArrayLike,
    *,
    eps: float = 1e-5,
) -> jax.Array:
    """Batch normalization with fixed (running) statistics, for evaluation.

    ``y = scale * (x - state.mean) / sqrt(state.var + eps) + offset``: an affine map per
    channel, so samples no longer interact and a single sample may be passed.

    Args:
        x: array of shape ``(..., C)``.
        state: running statistics from ``update_running_stats``.
        scale: per-channel gain, shape ``(C,)``.
        offset: per-channel bias, shape ``(C,)``.
        eps: added to the variance inside the square root, ``>= 0`` (checked when
            concrete; not under ``jit``).

    Example:
        >>> import jax.numpy as jnp
        >>> state = BatchNormState(mean=jnp.array([1.0]), var=jnp.array([4.0]))
        >>> y = batch_norm_inference(jnp.array([5.0]), state, jnp.ones(1), jnp.zeros(1),
        ...                          eps=0.0)
        >>> float(y[0])
        2.0
    """
    x, scale, offset = _affine_inputs(x, scale, offset, eps, min_rank=1)
    check_shape("state.mean", state.mean, x.shape[-1:])
    check_shape("state.var", state.var, x.shape[-1:])
    shape = (1,) * (x.ndim - 1) + (x.shape[-1],)
    return _normalize(
        x, state.mean.reshape(shape), state.var.reshape(shape), scale, offset, eps
    )


def cross_sample_jacobian(
    norm_fn: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    loss_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
    """Blocks ``J[a, b] = d loss(y[a]) / d x[b]`` of a batch map ``y = norm_fn(x)``.

    The "loss of sample ``a``" is ``loss_fn`` applied to that sample's output row
    ``y[a]`` alone (a per-sample function: scalar or array valued, mapped over the batch
    with ``vmap``). By default it is the output row itself, so ``J[a, b]`` is the full
    Jacobian block ``dy[a] / dx[b]``. The Jacobian of the stacked per-sample losses with
    respect to the whole batch is taken with ``jax.jacrev``; the off-diagonal blocks
    ``a != b`` are the cross-sample coupling. They vanish for any map that treats the
    samples independently (layer norm, instance norm) and not for batch norm.

    Note that a normalized row has a fixed sum and a nearly fixed sum of squares, so a
    loss such as ``sum(y[a])`` would hide the coupling; prefer the default or a generic
    loss such as a fixed linear read-out.

    Args:
        norm_fn: map from a batch ``(N, ...)`` to outputs ``(N, ...)``.
        x: the batch, shape ``(N, ...)``.
        loss_fn: per-sample function of one output row; ``None`` for the identity.

    Returns:
        Array of shape ``(N, N, *loss_shape, *x.shape[1:])`` indexed ``[a, b, ...]``.

    Example:
        >>> import functools, jax.numpy as jnp
        >>> bn = functools.partial(batch_norm, scale=jnp.ones(1), offset=jnp.zeros(1))
        >>> jac = cross_sample_jacobian(bn, jnp.array([[0.0], [1.0], [5.0]]))
        >>> jac.shape
        (3, 3, 1, 1)
        >>> bool(jnp.abs(jac[0, 1]).max() > 0)
        True
    """
    x = as_real_float("x", x)
    check_shape("x", x, (None, ...))
    n = x.shape[0]

    def per_sample_losses(batch: jax.Array) -> jax.Array:
        y = norm_fn(batch)
        check_shape("norm_fn(x)", y, (n, ...))
        return y if loss_fn is None else jax.vmap(loss_fn)(y)

    jac = jax.jacrev(per_sample_losses)(x)  # (N_a, *loss_shape, N_b, *x.shape[1:])
    loss_ndim = jac.ndim - x.ndim - 1
    return jnp.moveaxis(jac, 1 + loss_ndim, 1)


def cross_sample_block_norms(jac: ArrayLike) -> jax.Array:
    """Frobenius norm of each block ``J[a, b]`` of ``cross_sample_jacobian``: (N, N).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(cross_sample_block_norms(jnp.ones((2, 2, 3, 4)))[0, 1]), 4)
        3.4641
    """
    jac = as_real_float("jac", jac)
    check_shape("jac", jac, (None, None, ...))
    if jac.shape[0] != jac.shape[1]:
        raise ValueError(f"jac must have shape (N, N, ...), got {jac.shape}")
    flat = jac.reshape(jac.shape[0], jac.shape[1], -1)
    return jnp.sqrt(jnp.sum(jnp.square(flat), axis=-1))


def _standardized(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``xhat (M, C)`` over the ``M`` positions of ``x (N, ..., C)``; ``s``, ``var``."""
    flat = x.reshape(-1, x.shape[-1])
    mean, var = _moments(flat, (0,))
    s = jnp.sqrt(var + eps)
    return (flat - mean) / s, s, var


def batch_norm_jacobian(
    x: ArrayLike, scale: ArrayLike, *, eps: float = 1e-5
) -> jax.Array:
    """The closed-form Jacobian of ``batch_norm`` (training mode) in blocks ``[a, b]``.

    Per channel ``c``, over the ``M = N * L`` positions ``m`` of ``x (N, *spatial, C)``
    (``L`` the product of the spatial sizes), with ``s = sqrt(var + eps)`` and ``xhat =
    (x - mean) / s``,

        dy[m, c] / dx[m', c'] = delta(c, c') * scale[c] / s[c]
                                * (delta(m, m') - 1/M - xhat[m, c] xhat[m', c] / M).

    ``offset`` does not enter. The layout is that of ``cross_sample_jacobian`` of
    ``batch_norm`` (by autodiff), so the two can be compared entry by entry.

    Args:
        x: the batch ``(N, ..., C)``, at least 2-D.
        scale: per-channel gain, shape ``(C,)``.
        eps: added to the variance inside the square root, ``>= 0`` (checked when
            concrete; not under ``jit``).

    Returns:
        Array ``(N, N, *x.shape[1:], *x.shape[1:])`` indexed ``[a, b, ...]``.

    Example:
        >>> import jax.numpy as jnp
        >>> jac = batch_norm_jacobian(jnp.array([[1.0], [3.0]]), jnp.ones(1), eps=0.0)
        >>> jac[:, :, 0, 0].tolist()  # xhat = (-1, 1): 1 - 1/2 - 1/2 = 0 everywhere
        [[0.0, 0.0], [0.0, 0.0]]
    """
    x, scale, _ = _affine_inputs(x, scale, jnp.zeros_like(scale), eps, min_rank=2)
    xhat, s, _ = _standardized(x, eps)
    m, channels = xhat.shape
    coupling = jnp.eye(m)[:, :, None] - 1.0 / m - xhat[:, None, :] * xhat[None] / m
    per_channel = coupling * (scale / s[0])[None, None, :]  # (M, M', C)
    jac = jnp.einsum("pqc,cd->pcqd", per_channel, jnp.eye(channels, dtype=x.dtype))
    jac = jac.reshape(x.shape + x.shape)  # (N, *inner, N', *inner')
    return jnp.moveaxis(jac, x.ndim, 1)


class BatchNormGradIdentities(NamedTuple):
    """How closely ``dL/dx`` of ``batch_norm`` meets its two identities, per channel.

    Attributes:
        sum_rel: ``|sum_m dL/dx[m]| / sum_m |dL/dx[m]|`` (0 in exact arithmetic).
        xhat_cosine: ``|<dL/dx, xhat>| / (||dL/dx|| ||xhat||)`` (0 when ``eps = 0``).
        formula_error: ``|<dL/dx, xhat> - predicted| / (||dL/dx|| ||xhat||)`` with
            ``predicted = scale / s * eps / (var + eps) * <g, xhat>`` (0 for any eps).
    """

    sum_rel: jax.Array
    xhat_cosine: jax.Array
    formula_error: jax.Array


def batch_norm_grad_identities(
    x: ArrayLike, scale: ArrayLike, cotangent: ArrayLike, *, eps: float = 1e-5
) -> BatchNormGradIdentities:
    """Measure the two identities of the batch-norm input gradient, per channel.

    For an upstream gradient ``g = dL/dy`` the chain rule through the batch statistics
    (rows of ``batch_norm_jacobian``) gives, per channel and summing over the ``M``
    positions of ``x (N, ..., C)``,

        sum_m dL/dx[m] = 0,
        sum_m dL/dx[m] xhat[m] = scale / s * eps / (var + eps) * sum_m g[m] xhat[m],

    so ``dL/dx`` is orthogonal to ``xhat`` exactly when ``eps = 0``. ``dL/dx`` is taken
    by reverse-mode autodiff (``jax.vjp``) and compared with both, relative to its size;
    the results are round-off (about the dtype's machine epsilon) unless autodiff or the
    layer is wrong.

    Args:
        x: the batch ``(N, ..., C)``, at least 2-D.
        scale: per-channel gain, shape ``(C,)``.
        cotangent: ``g = dL/dy``, the shape of ``x``.
        eps: as in ``batch_norm`` (``>= 0``, checked when concrete; not under ``jit``).

    Returns:
        A :class:`BatchNormGradIdentities` of ``(C,)`` arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> x, g = jnp.array([[0.0], [1.0], [5.0]]), jnp.array([[1.0], [0.0], [2.0]])
        >>> ids = batch_norm_grad_identities(x, jnp.ones(1), g, eps=0.0)
        >>> bool(ids.sum_rel[0] < 1e-6), bool(ids.xhat_cosine[0] < 1e-6)
        (True, True)
    """
    x, scale, offset = _affine_inputs(x, scale, jnp.zeros_like(scale), eps, min_rank=2)
    cotangent = as_real_float("cotangent", cotangent)
    check_shape("cotangent", cotangent, x.shape)
    _, pullback = jax.vjp(lambda x: batch_norm(x, scale, offset, eps=eps), x)
    (grad,) = pullback(cotangent.astype(x.dtype))
    grad = grad.reshape(-1, x.shape[-1])
    g = cotangent.reshape(grad.shape)
    xhat, s, var = _standardized(x, eps)
    inner = jnp.sum(grad * xhat, axis=0)
    size = jnp.sqrt(jnp.sum(grad**2, axis=0) * jnp.sum(xhat**2, axis=0))
    predicted = scale / s[0] * eps / (var[0] + eps) * jnp.sum(g * xhat, axis=0)
    return BatchNormGradIdentities(
        sum_rel=jnp.abs(jnp.sum(grad, axis=0)) / jnp.sum(jnp.abs(grad), axis=0),
        xhat_cosine=jnp.abs(inner) / size,
        formula_error=jnp.abs(inner - predicted) / size,
    )


PerExampleMethod = Literal["jacrev", "vmap"]
PER_EXAMPLE_METHODS: tuple[PerExampleMethod, ...] = ("jacrev", "vmap")


def per_example_grads(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    *,
    method: PerExampleMethod = "jacrev",
    axis_name: str | None = None,
) -> Any:
    """Per-example gradients ``d loss_i / d params``, decomposed one of three ways.

    ``loss_fn(params, batch)`` returns the ``(B,)`` per-example losses of a batch (a
    pytree whose every leaf has the leading axis ``B``); for a model close over its
    ``apply(params, x_batch)`` (a Flax ``module.apply``, or for NNX ``lambda s, x:
    nnx.merge(graphdef, s)(x)``). Row ``i`` of the result is

    - ``method="jacrev"``: ``jax.jacrev(loss_fn)(params, batch)``, the gradient of
      example ``i``'s loss *in context*: with batch statistics it depends on every
      example, and the rows sum to the batch gradient ``d (sum_i loss_i) / d params``.
    - ``method="vmap"``: ``jax.vmap(jax.grad(...))``, example ``i`` passed to
      ``loss_fn`` alone as a batch of one. Equal to ``"jacrev"`` when examples do not
      interact; with batch norm each example is normalized by its own statistics (a
      batch of one normalizes to exactly 0), which is neither.
    - ``method="vmap"`` with ``axis_name``: the same, with the mapped axis named so
      that ``loss_fn``'s batch statistics are shared over it (build ``loss_fn`` with
      ``batch_norm(..., axis_name=axis_name)``, as Flax's ``BatchNorm(axis_name=...)``).
      The rows sum to the batch gradient, but row ``i`` collects the gradient flowing
      through example ``i``'s *input* from every example's loss: a different split.

    Args:
        loss_fn: ``(params, batch) -> (B,)`` per-example losses.
        params: the pytree to differentiate.
        batch: a pytree of arrays with a common leading axis ``B >= 1``.
        method: ``"jacrev"`` or ``"vmap"``.
        axis_name: only with ``"vmap"``: the name given to the mapped axis.

    Returns:
        ``params``' structure, each leaf with a leading axis ``B``.

    Example:
        >>> import jax.numpy as jnp
        >>> def loss_fn(w, x):  # (B,) losses of a linear model
        ...     return 0.5 * (x @ w) ** 2
        >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
        >>> per_example_grads(loss_fn, jnp.ones(2), x).tolist()
        [[1.0, 0.0], [0.0, 4.0]]
    """
    check_choice("method", method, PER_EXAMPLE_METHODS)
    if axis_name is not None and method != "vmap":
        raise ValueError(f"axis_name is for method='vmap' only, got method={method!r}")
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(batch)]
    if not shapes or min(map(len, shapes)) == 0 or len({s[0] for s in shapes}) > 1:
        raise ValueError(
            f"batch must hold arrays with one common leading axis, got shapes {shapes}"
        )

    def losses(params, batch):
        out = loss_fn(params, batch)
        check_shape("loss_fn(params, batch)", out, jax.tree.leaves(batch)[0].shape[:1])
        return out

    if method == "jacrev":
        return jax.jacrev(losses)(params, batch)

    def alone(params, example):  # one example as a batch of one
        return losses(params, jax.tree.map(lambda a: a[None], example))[0]

    per_example = jax.vmap(jax.grad(alone), in_axes=(None, 0), axis_name=axis_name)
    return per_example(params, batch)


class PerExampleDecompositions(NamedTuple):
    """Per-example gradients three ways, and the batch gradient they split.

    Attributes:
        in_context: ``method="jacrev"``: rows ``d loss_i / d params`` in the batch.
        alone: ``method="vmap"``: each example's gradient as a batch of one.
        shared: ``method="vmap"`` with ``axis_name``: statistics shared over the
            mapped axis; rows are the gradient through each example's input.
        batch: ``d (sum_i loss_i) / d params``, without the leading axis.
    """

    in_context: Any
    alone: Any
    shared: Any
    batch: Any


def per_example_decompositions(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    batch: Any,
    *,
    axis_name: str = "batch",
) -> PerExampleDecompositions:
    """The three decompositions of :func:`per_example_grads` and the batch gradient.

    ``loss_fn(params, batch, axis_name=None)`` returns the ``(B,)`` per-example losses;
    given an ``axis_name`` it must share its batch statistics over that named axis
    (``batch_norm(..., axis_name=axis_name)``; layers without batch statistics ignore
    it). In exact arithmetic the ``in_context`` rows and the ``shared`` rows each sum
    to ``batch``, while the ``alone`` rows do only when the examples do not interact
    (for batch norm a batch of one normalizes to 0, so they do not).

    Args:
        loss_fn: ``(params, batch, axis_name=None) -> (B,)`` per-example losses.
        params: the pytree to differentiate.
        batch: a pytree of arrays with a common leading axis ``B >= 1``.
        axis_name: the name given to the mapped axis of the ``shared`` method.

    Returns:
        A :class:`PerExampleDecompositions`; its first three fields have ``params``'
        structure with a leading axis ``B``, ``batch`` has ``params``' own.

    Example:
        >>> import jax.numpy as jnp
        >>> def loss_fn(w, x, axis_name=None):  # batch norm couples the examples
        ...     h = batch_norm(x @ w, jnp.ones(1), jnp.zeros(1), axis_name=axis_name)
        ...     return h[:, 0] ** 3
        >>> x = jnp.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
        >>> ways = per_example_decompositions(loss_fn, jnp.array([[1.0], [2.0]]), x)
        >>> float(jnp.abs(ways.alone).max())  # a batch of one normalizes to 0
        0.0
        >>> [bool(jnp.allclose(rows.sum(0), ways.batch)) for rows in ways[:3]]
        [True, False, True]
    """
    shared_fn = functools.partial(loss_fn, axis_name=axis_name)
    return PerExampleDecompositions(
        in_context=per_example_grads(loss_fn, params, batch),
        alone=per_example_grads(loss_fn, params, batch, method="vmap"),
        shared=per_example_grads(
            shared_fn, params, batch, method="vmap", axis_name=axis_name
        ),
        batch=jax.grad(lambda p: jnp.sum(loss_fn(p, batch)))(params),
    )

"""Losses whose derivatives are right at the kinks: Huber, triplet, CE; and Brier.

Every kink carries an explicit derivative rule, so ``jax.grad``, ``jax.jvp``,
``jax.jacfwd``, ``jax.jacrev`` and ``jax.hessian`` all see the same, documented
derivative, including at the exact points where a naive formulation goes wrong:

- ``huber``: the derivative is ``clip(r, -delta, delta)`` everywhere, also exactly at
  ``|r| = delta`` and ``r = 0``; the second derivative is the indicator of the closed
  quadratic region ``|r| <= delta`` (tie rules of ``jnp.minimum``/``jnp.maximum`` would
  give 1/2 there, a curvature no side of the kink has).
- ``triplet``: distances are p-norms with a ``custom_jvp`` whose (sub)gradient at the
  origin is 0, so coinciding points (``anchor == positive``) give finite gradients
  where ``jnp.linalg.norm``'s ``x / ||x||`` is 0/0 = NaN. The hinge is inactive at
  exactly zero (derivative 0, never 1/2).
- ``cross_entropy``: log-sum-exp form, stable for any logit scale.
- ``brier``: squared distance of predicted probabilities to the target distribution.

Settings (``delta > 0``, ``margin >= 0``, ``p >= 1``) are checked whenever they are
concrete (a Python number, a numpy or a concrete jax array); a setting traced under
``jax.jit`` is not checked (see :mod:`chainlab.validation`). Shapes and dtypes are
checked at trace time, under ``jit`` too.

References: P. J. Huber, "Robust Estimation of a Location Parameter", Ann. Math.
Statist. 35 (1964); F. Schroff, D. Kalenichenko, J. Philbin, "FaceNet", CVPR 2015
(triplet loss, semi-hard mining); A. Hermans, L. Beyer, B. Leibe, "In Defense of the
Triplet Loss for Person Re-Identification", arXiv:1703.07737 (batch-hard mining); G. W.
Brier, Monthly Weather Review 78 (1950) (the Brier score).
"""

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.activations import relu
from chainlab.validation import (
    as_real_float,
    as_static_number,
    check_choice,
    check_dtype,
    check_in_range,
    check_nonnegative,
    check_positive,
    check_rank,
    check_same_shape,
    check_shape,
)

__all__ = [
    "Triplets",
    "batch_hard_triplet",
    "brier",
    "cross_entropy",
    "huber",
    "mine_batch_hard",
    "mine_semi_hard",
    "pairwise_distance",
    "pnorm",
    "semi_hard_triplet",
    "triplet",
]

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- Huber


@jax.custom_jvp
def _huber(residual: jax.Array, delta: jax.Array) -> jax.Array:
    absolute = jnp.abs(residual)
    return jnp.where(
        absolute <= delta, 0.5 * residual**2, delta * (absolute - 0.5 * delta)
    )


@_huber.defjvp
def _huber_jvp(primals, tangents):
    # d/dr = clip(r, -delta, delta) and d/ddelta = max(|r| - delta, 0), both written
    # with `where` on the closed quadratic region so that differentiating the rule
    # again gives the second derivative 1 for |r| <= delta and 0 outside (no 1/2 ties).
    residual, delta = primals
    t_residual, t_delta = tangents
    inside = jnp.abs(residual) <= delta
    d_residual = jnp.where(inside, residual, delta * jnp.sign(residual))
    d_delta = jnp.where(inside, jnp.zeros_like(residual), jnp.abs(residual) - delta)
    return _huber(residual, delta), d_residual * t_residual + d_delta * t_delta


def huber(residual: ArrayLike, *, delta: ArrayLike = 1.0) -> jax.Array:
    r"""Huber loss, elementwise.

    .. math::

        h_\delta(r) = \begin{cases} r^2 / 2 & |r| \le \delta \\
        \delta (|r| - \delta / 2) & |r| > \delta \end{cases},
        \qquad h_\delta'(r) = \operatorname{clip}(r, -\delta, \delta).

    The derivative is exactly ``clip(r, -delta, delta)`` at every point, including
    ``|r| = delta`` and ``r = 0``, in forward and reverse mode. The second derivative is
    1 on the closed interval ``|r| <= delta`` and 0 outside (the quadratic side owns the
    boundary). ``delta`` is differentiable too: ``dh/ddelta = max(|r| - delta, 0)``.

    Reference: P. J. Huber, Ann. Math. Statist. 35 (1964), eq. (2.1) up to the factor
    1/2 convention used here (and by optax).

    Args:
      residual: any shape; integers are promoted to float.
      delta: the scalar ``> 0`` where the loss turns from quadratic to linear; checked
        when concrete (a traced ``delta`` under ``jit`` is not checked).

    Returns:
      An array of the shape of ``residual``.

    Example:
      >>> import jax
      >>> [round(float(huber(r, delta=1.0)), 4) for r in (0.5, 1.0, 3.0)]
      [0.125, 0.5, 2.5]
      >>> round(float(jax.grad(huber)(1.0)), 4)
      1.0
    """
    residual = as_real_float("residual", residual)
    check_rank("delta", delta, 0)
    check_positive("delta", delta)
    return _huber(residual, jnp.asarray(delta, dtype=residual.dtype))


# ------------------------------------------------------------------------- p-norms


def _norm_degree(p: float) -> float:
    p = as_static_number("p", p)
    check_in_range("p", p, 1, math.inf, high_inclusive=True)
    return p


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _pnorm(x: jax.Array, p: float) -> jax.Array:
    absolute = jnp.abs(x)
    if p == 1:
        return jnp.sum(absolute, axis=-1)
    scale = jnp.max(absolute, axis=-1)
    if p == math.inf:
        return scale
    # Divide by the largest entry first so that |x|**p neither overflows nor underflows.
    safe_scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    ratio = absolute / safe_scale[..., None]
    return scale * jnp.sum(ratio**p, axis=-1) ** (1 / p)


@_pnorm.defjvp
def _pnorm_jvp(p, primals, tangents):
    (x,), (t,) = primals, tangents
    norm = _pnorm(x, p)
    return norm, jnp.sum(_pnorm_gradient(x, norm, p) * t, axis=-1)


def _pnorm_gradient(x: jax.Array, norm: jax.Array, p: float) -> jax.Array:
    """d||x||_p / dx, with the subgradient 0 at x = 0 (double-`where`, so NaN-free)."""
    if p == 1:
        return jnp.sign(x)  # sign(0) = 0 is a subgradient of |.| at 0
    if p == math.inf:
        absolute = jnp.abs(x)
        winner = jnp.argmax(absolute, axis=-1)  # ties go to the lowest index
        onehot = jax.nn.one_hot(winner, x.shape[-1], dtype=x.dtype)
        return onehot * jnp.sign(x)
    positive = (norm > 0)[..., None]
    safe_norm = jnp.where(norm > 0, norm, jnp.ones_like(norm))[..., None]
    if p == 2:
        return jnp.where(positive, x / safe_norm, jnp.zeros_like(x))
    ratio = jnp.abs(x) / safe_norm
    nonzero = ratio > 0
    safe_ratio = jnp.where(nonzero, ratio, jnp.ones_like(ratio))
    power = jnp.where(nonzero, safe_ratio ** (p - 1), jnp.zeros_like(ratio))
    return jnp.where(positive, jnp.sign(x) * power, jnp.zeros_like(x))


def pnorm(x: ArrayLike, *, p: float = 2) -> jax.Array:
    r"""The p-norm over the last axis, :math:`\|x\|_p = (\sum_i |x_i|^p)^{1/p}`.

    Gradient :math:`\operatorname{sign}(x_i) (|x_i| / \|x\|_p)^{p-1}` (for ``p = 2``:
    ``x / ||x||``; for ``p = inf``: the sign at the first largest entry), and the
    subgradient 0 at ``x = 0``, so a zero vector gives a zero gradient, not NaN.
    The absolute value is inside the sum, so odd ``p`` is a norm too.

    Args:
      x: ``(..., d)`` with ``d >= 1``.
      p: a Python number ``>= 1`` or ``math.inf`` (static).

    Returns:
      ``(...)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> round(float(pnorm(jnp.array([3.0, -4.0]))), 4)
      5.0
      >>> round(float(pnorm(jnp.array([1.0, -1.0]), p=3)), 4)
      1.2599
      >>> jax.grad(pnorm)(jnp.zeros(2)).tolist()
      [0.0, 0.0]
    """
    p = _norm_degree(p)
    x = as_real_float("x", x)
    check_shape("x", x, (..., None))
    if x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., d) with d >= 1, got {x.shape}")
    return _pnorm(x, p)


def pairwise_distance(x: ArrayLike, y: ArrayLike | None = None, *, p: float = 2):
    """All p-norm distances ``D[i, j] = ||x_i - y_j||_p`` between rows.

    Args:
      x: ``(n, d)``.
      y: ``(m, d)``; defaults to ``x`` (then the diagonal is 0 with gradient 0).
      p: as in :func:`pnorm`.

    Returns:
      ``(n, m)``.

    Example:
      >>> import jax.numpy as jnp
      >>> pairwise_distance(jnp.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
      [[0.0, 5.0], [5.0, 0.0]]
    """
    x = as_real_float("x", x)
    y = x if y is None else as_real_float("y", y)
    check_rank("x", x, 2)
    check_shape("y", y, (None, x.shape[1]))
    return pnorm(x[:, None, :] - y[None, :, :], p=p)


# ------------------------------------------------------------------------- triplet


def _reduce(losses: jax.Array, reduction: Reduction, valid: jax.Array | None = None):
    if valid is not None:
        losses = jnp.where(valid, losses, jnp.zeros_like(losses))
    if reduction == "none":
        return losses
    total = jnp.sum(losses)
    if reduction == "sum":
        return total
    count = losses.size if valid is None else jnp.sum(valid)
    return total / jnp.maximum(count, 1).astype(losses.dtype)


def triplet(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    margin: ArrayLike = 1.0,
    p: float = 2,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Triplet margin loss, one value per triplet.

    .. math::

        \ell(a, p, n) = \max(\|a - p\|_p - \|a - n\|_p + m, 0)

    with the p-norm over the last axis (:func:`pnorm`). When the hinge is active and
    ``p = 2``, :math:`\partial\ell/\partial a = (a - p)/d_{ap} - (a - n)/d_{an}`,
    :math:`\partial\ell/\partial p = -(a - p)/d_{ap}` and
    :math:`\partial\ell/\partial n = (a - n)/d_{an}`. Coinciding points give the
    subgradient 0 for that distance (finite, never NaN); at exactly zero the hinge is
    inactive (derivative 0).

    Reference: Schroff et al., "FaceNet", CVPR 2015, eq. (1) (there with squared
    distances); the same form as ``torch.nn.TripletMarginLoss`` (without its ``eps``).

    Args:
      anchor: ``(..., d)``.
      positive: ``(..., d)``, the shape of ``anchor``.
      negative: ``(..., d)``, the shape of ``anchor``.
      margin: the scalar ``m >= 0``; checked when concrete (a traced ``margin`` under
        ``jit`` is not checked).
      p: norm degree, a Python number ``>= 1`` or ``math.inf``.
      reduction: ``"none"`` (shape ``(...)``, the default of the whole triplet
        family), ``"mean"`` or ``"sum"``.

    Example:
      >>> import jax.numpy as jnp
      >>> a, p, n = jnp.zeros(2), jnp.array([3.0, 4.0]), jnp.array([0.0, 1.0])
      >>> round(float(triplet(a, p, n, margin=1.0)), 4)  # 5 - 1 + 1
      5.0
    """
    check_choice("reduction", reduction, REDUCTIONS)
    anchor = as_real_float("anchor", anchor)
    positive = as_real_float("positive", positive)
    negative = as_real_float("negative", negative)
    check_same_shape(anchor=anchor, positive=positive, negative=negative)
    check_shape("anchor", anchor, (..., None))
    check_rank("margin", margin, 0)
    check_nonnegative("margin", margin)
    d_ap = pnorm(anchor - positive, p=p)
    d_an = pnorm(anchor - negative, p=p)
    # The hinge is chainlab's relu: derivative 1 for z > 0 and 0 at z <= 0, never the
    # 1/2 that jnp.maximum(z, 0) gives at an exact tie.
    return _reduce(relu(d_ap - d_an + margin), reduction)


class Triplets(NamedTuple):
    """Index triplets into a batch; ``valid`` is False where no triplet exists."""

    anchor: jax.Array
    positive: jax.Array
    negative: jax.Array
    valid: jax.Array


def _batch_masks(embeddings: ArrayLike, labels: ArrayLike):
    embeddings = as_real_float("embeddings", embeddings)
    labels = jnp.asarray(labels)
    check_rank("embeddings", embeddings, 2)
    check_shape("labels", labels, embeddings.shape[:1])
    check_dtype("labels", labels, jnp.integer)
    same = labels[:, None] == labels[None, :]
    positive_mask = same & ~jnp.eye(labels.shape[0], dtype=bool)
    return embeddings, positive_mask, ~same


def mine_batch_hard(
    embeddings: ArrayLike, labels: ArrayLike, *, p: float = 2
) -> Triplets:
    """Batch-hard mining: per anchor, the farthest positive and the nearest negative.

    One triplet per row of the batch (Hermans et al. 2017, "batch hard"). Ties go to
    the lowest index. The selection is not differentiated (indices), the loss on the
    selected triplets is.

    Args:
      embeddings: ``(n, d)``.
      labels: ``(n,)`` integers.
      p: norm degree of the distance.

    Returns:
      :class:`Triplets` of shape ``(n,)`` each; ``valid[i]`` is False when anchor ``i``
      has no other sample of its class or no sample of another class in the batch.

    Example:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0], [1.0], [3.0], [0.5]])
      >>> t = mine_batch_hard(e, jnp.array([0, 0, 0, 1]))
      >>> t.positive.tolist(), t.negative.tolist()
      ([2, 2, 0, 0], [3, 3, 3, 0])
    """
    embeddings, positive_mask, negative_mask = _batch_masks(embeddings, labels)
    distance = jax.lax.stop_gradient(pairwise_distance(embeddings, p=p))
    positive = jnp.argmax(jnp.where(positive_mask, distance, -jnp.inf), axis=1)
    negative = jnp.argmin(jnp.where(negative_mask, distance, jnp.inf), axis=1)
    valid = positive_mask.any(axis=1) & negative_mask.any(axis=1)
    anchor = jnp.arange(embeddings.shape[0])
    return Triplets(anchor, positive, negative, valid)


def mine_semi_hard(
    embeddings: ArrayLike, labels: ArrayLike, *, p: float = 2
) -> Triplets:
    """Semi-hard mining: every positive pair with its nearest farther negative.

    For each anchor-positive pair ``(a, p)`` the negative is the closest ``n`` with
    ``d_an > d_ap`` (semi-hard, Schroff et al. 2015); if there is none, the farthest
    negative (the convention of TensorFlow Addons' ``triplet_semihard_loss``).

    Args:
      embeddings: ``(n, d)``.
      labels: ``(n,)`` integers.
      p: norm degree of the distance.

    Returns:
      :class:`Triplets` of shape ``(n * n,)`` each, row-major over ``(anchor,
      positive)``; ``valid`` marks the real positive pairs that have a negative.

    Example:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0], [1.0], [0.5], [2.0]])
      >>> t = mine_semi_hard(e, jnp.array([0, 0, 1, 1]))
      >>> t.negative[t.valid].tolist()  # pairs (0, 1), (1, 0), (2, 3), (3, 2)
      [3, 3, 0, 0]
    """
    embeddings, positive_mask, negative_mask = _batch_masks(embeddings, labels)
    n = embeddings.shape[0]
    distance = jax.lax.stop_gradient(pairwise_distance(embeddings, p=p))
    anchor = jnp.repeat(jnp.arange(n), n)
    positive = jnp.tile(jnp.arange(n), n)
    d_ap = distance.reshape(-1)
    d_an = distance[anchor]  # (n * n, n): distances from each pair's anchor
    is_negative = negative_mask[anchor]
    farther = is_negative & (d_an > d_ap[:, None])
    nearest_farther = jnp.argmin(jnp.where(farther, d_an, jnp.inf), axis=1)
    farthest = jnp.argmax(jnp.where(is_negative, d_an, -jnp.inf), axis=1)
    negative = jnp.where(farther.any(axis=1), nearest_farther, farthest)
    valid = positive_mask.reshape(-1) & is_negative.any(axis=1)
    return Triplets(anchor, positive, negative, valid)


def _mined_loss(mine, embeddings, labels, margin, p, reduction) -> jax.Array:
    check_choice("reduction", reduction, REDUCTIONS)
    embeddings = as_real_float("embeddings", embeddings)
    t = mine(embeddings, labels, p=p)
    losses = triplet(
        embeddings[t.anchor],
        embeddings[t.positive],
        embeddings[t.negative],
        margin=margin,
        p=p,
    )
    return _reduce(losses, reduction, t.valid)


def batch_hard_triplet(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    margin: ArrayLike = 1.0,
    p: float = 2,
    reduction: Reduction = "none",
) -> jax.Array:
    """Triplet loss on the batch-hard triplets of :func:`mine_batch_hard`.

    ``"none"`` (the default of the triplet family) returns one loss per anchor,
    ``(n,)``, with 0 for the anchors without a valid triplet; ``"mean"`` averages over
    the valid triplets only; ``"sum"`` adds them. ``margin`` and ``p`` as in
    :func:`triplet`.

    Example:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0], [1.0], [3.0], [0.5]])
      >>> labels = jnp.array([0, 0, 0, 1])
      >>> # anchors 0, 1, 2: (3 - 0.5 + 1), (2 - 0.5 + 1), (3 - 2.5 + 1); 3 is invalid
      >>> batch_hard_triplet(e, labels).tolist()
      [3.5, 2.5, 1.5, 0.0]
      >>> round(float(batch_hard_triplet(e, labels, reduction="mean")), 4)
      2.5
    """
    return _mined_loss(mine_batch_hard, embeddings, labels, margin, p, reduction)


def semi_hard_triplet(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    margin: ArrayLike = 1.0,
    p: float = 2,
    reduction: Reduction = "none",
) -> jax.Array:
    """Triplet loss on the semi-hard triplets of :func:`mine_semi_hard`.

    ``"none"`` (the default of the triplet family) returns one loss per (anchor,
    positive) pair, ``(n * n,)`` row-major, with 0 for the pairs that are not valid
    triplets; ``"mean"`` averages over the valid pairs only; ``"sum"`` adds them.
    ``margin`` and ``p`` as in :func:`triplet`.

    Example:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0], [1.0], [0.5], [2.0]])
      >>> # hinges (1 - 2 + 1), (1 - 1 + 1), (1.5 - 0.5 + 1), (1.5 - 2 + 1)
      >>> loss = semi_hard_triplet(e, jnp.array([0, 0, 1, 1]), reduction="mean")
      >>> round(float(loss), 4)
      0.875
    """
    return _mined_loss(mine_semi_hard, embeddings, labels, margin, p, reduction)


# ------------------------------------------------------------------- cross-entropy


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Softmax cross-entropy with integer labels, one value per example.

    .. math:: \ell(z, y) = \log \sum_c e^{z_c} - z_y,
       \qquad \partial \ell / \partial z = \operatorname{softmax}(z) - e_y.

    Computed as log-sum-exp minus the picked logit, stable for any logit scale.
    Labels outside ``[0, C)`` give NaN (a loud signal that also works under ``jit``).

    Args:
      logits: ``(..., C)``.
      labels: ``(...)`` integers in ``[0, C)``.

    Returns:
      ``(...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(cross_entropy(jnp.array([0.0, 0.0]), jnp.array(1))), 4)
      0.6931
    """
    logits = as_real_float("logits", logits)
    labels = jnp.asarray(labels)
    check_dtype("labels", labels, jnp.integer)
    check_shape("logits", logits, (..., None))
    check_shape("labels", labels, logits.shape[:-1])
    picked = jnp.take_along_axis(
        logits,
        labels[..., None],
        axis=-1,
        mode="fill",
        fill_value=jnp.nan,
        wrap_negative_indices=False,
    )[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


# --------------------------------------------------------------------------- Brier


def brier(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Brier score of predicted class probabilities, one value per example.

    .. math:: \ell(p, y) = \sum_c (p_c - t_c)^2,
       \qquad \partial \ell / \partial p = 2 (p - t),

    with ``t`` the target distribution: ``onehot(y)`` for integer labels ``y``, or the
    given probability vectors. A proper scoring rule, bounded by 2 for probability
    vectors, and with a gradient that stays bounded as predictions saturate (unlike
    cross-entropy's). Integer labels outside ``[0, C)`` give NaN (a loud signal that
    also works under ``jit``), as in :func:`cross_entropy`.

    Reference: G. W. Brier, "Verification of Forecasts Expressed in Terms of
    Probability", Monthly Weather Review 78 (1950), eq. (1) without the mean over
    forecasts (take ``jnp.mean`` of the result for it).

    Args:
      predictions: ``(..., C)`` probabilities (not checked to sum to 1).
      targets: ``(...)`` integer labels in ``[0, C)``, or ``(..., C)`` floating
        target probabilities.

    Returns:
      ``(...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(brier(jnp.array([0.75, 0.25]), jnp.array(0))), 4)
      0.125
      >>> round(float(brier(jnp.array([0.75, 0.25]), jnp.array([0.5, 0.5]))), 4)
      0.125
    """
    predictions = as_real_float("predictions", predictions)
    check_shape("predictions", predictions, (..., None))
    targets = jnp.asarray(targets)
    classes = predictions.shape[-1]
    if jnp.issubdtype(targets.dtype, jnp.integer):
        check_shape("targets", targets, predictions.shape[:-1])
        inside = (targets >= 0) & (targets < classes)
        onehot = jax.nn.one_hot(targets, classes, dtype=predictions.dtype)
        loss = jnp.sum(jnp.square(predictions - onehot), axis=-1)
        return jnp.where(inside, loss, jnp.nan)
    targets = as_real_float("targets", targets)
    check_shape("targets", targets, predictions.shape)
    return jnp.sum(jnp.square(predictions - targets), axis=-1)

"""Softmax attention with an explicit temperature, and the chain rule for dL/dtau.

For queries ``q (..., Tq, d)``, keys ``k (..., Tk, d)`` and values ``v (..., Tk, dv)``,

    z = q k^T / tau,    A = softmax(z) over the keys,    out = A v.

There is no hidden ``1/sqrt(d)``: pass ``tau=sqrt(d)`` for the scaling of Vaswani et al.
(2017). The temperature enters only through the logits, so for a loss ``L`` the chain
rule gives ``dz/dtau = -z / tau`` and

    dL/dtau = sum_ij (dL/dz_ij) (dz_ij/dtau) = -(1/tau) sum_ij z_ij dL/dz_ij,

with the softmax backward pass ``dL/dz_ij = A_ij (g_ij - sum_l A_il g_il)`` and
``g = dL/dA = (dL/dout) v^T``. Per query this is ``-(1/tau) Cov_A(z, g)``: lowering
the temperature helps exactly when the high-logit keys are the ones the loss wants more
of. ``attention_tau_grad`` evaluates that closed form; the tests check it against
``jax.grad`` and finite differences.

A learned temperature is best optimised as ``log tau`` (positive, scale-free steps).
Learned logit scales are known to grow without bound on separable data (Radford et al.,
2021, clip the CLIP logit scale at 100), so ``temperature_from_log`` takes an optional
clip.

``tau`` (and the clip bounds) are checked ``> 0`` whenever they are concrete; a ``tau``
traced under ``jax.jit`` or ``vmap`` (a learned temperature, one per head) is not
checked (see :mod:`chainlab.validation`). Shapes and dtypes are checked at trace time,
under ``jit`` too.

Reference: A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017; A. Radford et
al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021.
"""

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_dtype,
    check_positive,
    check_rank,
    check_shape,
)

__all__ = ["attention", "attention_tau_grad", "temperature_from_log"]


def _inputs(q: ArrayLike, k: ArrayLike, v: ArrayLike, tau: ArrayLike):
    """q, k, v and tau as real floating arrays, their shapes and tau's sign checked."""
    q, k, v = (as_real_float(n, a) for n, a in (("q", q), ("k", k), ("v", v)))
    check_shape("q", q, (..., None, None))
    prefix, d = q.shape[:-2], q.shape[-1]
    check_shape("k", k, (*prefix, None, d))
    check_shape("v", v, (*prefix, k.shape[-2], None))
    # One scalar temperature; vmap over heads for one temperature per head.
    check_rank("tau", tau, 0)
    check_positive("tau", tau)
    return q, k, v, jnp.asarray(tau)


def _mask_for(mask: ArrayLike | None, shape: tuple[int, ...]):
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    check_dtype("mask", mask, jnp.bool_)
    try:
        return jnp.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"mask must broadcast to the logits shape (..., Tq, Tk) = {shape}, got "
            f"{mask.shape}"
        ) from None


def _softmax(z: jax.Array, mask: jax.Array | None) -> jax.Array:
    # Masked softmax without NaNs. The shift m is a constant for the softmax (it is
    # shift-invariant), so stopping its gradient is exact; masked logits are replaced
    # by m *before* exp, so neither the value nor the gradient can overflow there.
    if mask is None:
        m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
        e = jnp.exp(z - m)
        return e / jnp.sum(e, axis=-1, keepdims=True)
    m = jnp.max(jnp.where(mask, z, -jnp.inf), axis=-1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.where(mask, jnp.exp(jnp.where(mask, z, m) - m), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    # A fully masked row has total == 0: its weights are all 0 (not NaN).
    return e / jnp.where(total > 0, total, 1.0)


def _logits_and_weights(q, k, tau, mask):
    z = jnp.einsum("...qd,...kd->...qk", q, k) / tau
    return z, _softmax(z, mask)


def attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    tau: ArrayLike = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Softmax attention ``softmax(q k^T / tau) v`` with an explicit temperature.

    Args:
        q: queries ``(..., Tq, d)``.
        k: keys ``(..., Tk, d)``.
        v: values ``(..., Tk, dv)``.
        tau: scalar temperature ``> 0``, checked when concrete; it may be traced
            (a learned parameter, see ``temperature_from_log``), and is then not
            checked. No ``1/sqrt(d)`` is applied for you.
        mask: boolean, broadcastable to ``(..., Tq, Tk)``; True = the query may attend
            to that key. Masked keys get weight exactly 0 and no gradient. A query whose
            row is fully masked attends to nothing: its output is 0 and its gradients
            are 0 (never NaN).

    Returns:
        ``(..., Tq, dv)``.

    Example:
        >>> import jax.numpy as jnp
        >>> q = jnp.array([[1.0, 0.0]])
        >>> k = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> v = jnp.array([[1.0], [0.0]])
        >>> round(float(attention(q, k, v, tau=1.0)[0, 0]), 4)  # e / (e + 1)
        0.7311
    """
    q, k, v, tau = _inputs(q, k, v, tau)
    mask = _mask_for(mask, q.shape[:-1] + (k.shape[-2],))
    _, weights = _logits_and_weights(q, k, tau, mask)
    return jnp.einsum("...qk,...kv->...qv", weights, v)


def attention_tau_grad(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    tau: ArrayLike,
    cotangent: ArrayLike,
    *,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Closed-form ``dL/dtau`` for ``L = sum(cotangent * attention(q, k, v, tau=tau))``.

    Evaluated by hand, without autodiff, with ``z = q k^T / tau`` and
    ``A = softmax(z)``:

        g = cotangent v^T                          (dL/dA)
        dL/dz = A * (g - sum_j A_j g_j)            (softmax backward, per query)
        dL/dtau = -(1/tau) * sum z * dL/dz         (chain rule, dz/dtau = -z/tau)

    summed over queries and the batch prefix. Masked entries have ``A = 0`` and add
    nothing. Because ``cotangent`` is any upstream gradient ``dL/dout``, this is the
    temperature gradient of any loss downstream of the attention output.

    Args:
        q, k, v: as in ``attention``.
        tau: scalar temperature ``> 0`` (checked when concrete, as in ``attention``).
        cotangent: ``dL/dout``, shape ``(..., Tq, dv)``.
        mask: as in ``attention``.

    Returns:
        Scalar ``dL/dtau``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> q = jnp.array([[1.0, 0.5]])
        >>> k = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> v = jnp.array([[1.0], [0.0]])
        >>> ct = jnp.ones((1, 1))
        >>> closed = attention_tau_grad(q, k, v, 2.0, ct)
        >>> auto = jax.grad(lambda t: attention(q, k, v, tau=t).sum())(2.0)
        >>> round(float(closed), 4), round(float(auto), 4)
        (-0.0308, -0.0308)
    """
    q, k, v, tau = _inputs(q, k, v, tau)
    cotangent = as_real_float("cotangent", cotangent)
    check_shape("cotangent", cotangent, q.shape[:-1] + v.shape[-1:])
    mask = _mask_for(mask, q.shape[:-1] + (k.shape[-2],))
    z, weights = _logits_and_weights(q, k, tau, mask)
    g = jnp.einsum("...qv,...kv->...qk", cotangent, v)
    mean_g = jnp.sum(weights * g, axis=-1, keepdims=True)
    dz = weights * (g - mean_g)
    if mask is not None:
        z = jnp.where(mask, z, 0.0)  # dz is 0 there; keep 0 * (masked logit) finite
    return -jnp.sum(z * dz) / tau


def temperature_from_log(
    log_tau: ArrayLike,
    *,
    min_tau: float | None = None,
    max_tau: float | None = None,
) -> jax.Array:
    """Temperature ``tau = exp(clip(log_tau, log min_tau, log max_tau))``.

    Optimise ``log_tau`` instead of ``tau``: it keeps ``tau > 0`` and makes steps
    relative. The optional clip bounds the temperature, as CLIP bounds its learned logit
    scale ``1/tau`` at 100, because on separable data the loss keeps rewarding a
    sharper softmax and ``tau`` drifts to 0.

    The clip is written with selections, not ``jnp.clip``: its derivative is exactly 1
    on the closed interval (also at the bounds, where ``jnp.minimum`` / ``jnp.maximum``
    would give 1/2) and 0 strictly outside. A ``log_tau`` that has moved outside gets
    no gradient back, so project it after each update (e.g. with
    ``optax.projections.projection_box``) if it must stay movable.

    Args:
        log_tau: the parameter, any shape.
        min_tau: lower bound on ``tau`` (``> 0``), or ``None``.
        max_tau: upper bound on ``tau`` (``>= min_tau``), or ``None``.

    Example:
        >>> round(float(temperature_from_log(0.0)), 4)
        1.0
        >>> round(float(temperature_from_log(-10.0, min_tau=0.01)), 4)
        0.01
    """
    for label, bound in (("min_tau", min_tau), ("max_tau", max_tau)):
        if bound is not None:
            check_positive(label, bound)
    if min_tau is not None and max_tau is not None and min_tau > max_tau:
        raise ValueError(f"max_tau must be >= min_tau = {min_tau}, got {max_tau}")
    log_tau = as_real_float("log_tau", log_tau)
    if min_tau is not None:
        low = math.log(min_tau)
        log_tau = jnp.where(log_tau < low, low, log_tau)
    if max_tau is not None:
        high = math.log(max_tau)
        log_tau = jnp.where(log_tau > high, high, log_tau)
    return jnp.exp(log_tau)

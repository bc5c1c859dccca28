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

Reference: A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017; A. Radford et
al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021.
"""

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["attention", "attention_tau_grad", "temperature_from_log"]


def _check_qkv(name: str, q: jax.Array, k: jax.Array, v: jax.Array) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            f"{name}: q, k and v must have shapes (..., Tq, d), (..., Tk, d) and "
            f"(..., Tk, dv); got {q.shape}, {k.shape} and {v.shape}."
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"{name}: q, k and v must share the batch prefix (...); got "
            f"{q.shape[:-2]}, {k.shape[:-2]} and {v.shape[:-2]}."
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{name}: q and k must have the same feature size d; got {q.shape[-1]} "
            f"and {k.shape[-1]}."
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{name}: k and v must have the same number of keys Tk; got "
            f"{k.shape[-2]} and {v.shape[-2]}."
        )


def _check_tau(name: str, tau: ArrayLike) -> jax.Array:
    # The sign can be checked only for a Python number (an array may be traced).
    if isinstance(tau, int | float) and not tau > 0:
        raise ValueError(f"{name}: tau must be a positive temperature; got {tau}.")
    tau = jnp.asarray(tau)
    if tau.ndim != 0:
        raise ValueError(
            f"{name}: tau must be a scalar (vmap over heads for one temperature per "
            f"head); got shape {tau.shape}."
        )
    return tau


def _mask_for(name: str, mask: ArrayLike | None, shape: tuple[int, ...]):
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"{name}: mask must be boolean (True = attend); got dtype {mask.dtype}."
        )
    try:
        return jnp.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"{name}: mask of shape {mask.shape} does not broadcast to the logits "
            f"shape (..., Tq, Tk) = {shape}."
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
        tau: positive scalar temperature (may be traced, e.g. a learned parameter;
            see ``temperature_from_log``). No ``1/sqrt(d)`` is applied for you.
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
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    _check_qkv("attention", q, k, v)
    tau = _check_tau("attention", tau)
    mask = _mask_for("attention", mask, q.shape[:-1] + (k.shape[-2],))
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
        tau: positive scalar temperature.
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
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    cotangent = jnp.asarray(cotangent)
    _check_qkv("attention_tau_grad", q, k, v)
    tau = _check_tau("attention_tau_grad", tau)
    out_shape = q.shape[:-1] + (v.shape[-1],)
    if cotangent.shape != out_shape:
        raise ValueError(
            f"attention_tau_grad: cotangent must have the output shape (..., Tq, dv) "
            f"= {out_shape}; got {cotangent.shape}."
        )
    mask = _mask_for("attention_tau_grad", mask, q.shape[:-1] + (k.shape[-2],))
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
        min_tau: lower bound on ``tau`` (positive), or ``None``.
        max_tau: upper bound on ``tau``, or ``None``.

    Example:
        >>> round(float(temperature_from_log(0.0)), 4)
        1.0
        >>> round(float(temperature_from_log(-10.0, min_tau=0.01)), 4)
        0.01
    """
    for label, bound in (("min_tau", min_tau), ("max_tau", max_tau)):
        if bound is not None and not bound > 0:
            raise ValueError(
                f"temperature_from_log: {label} must be positive or None; got {bound}."
            )
    if min_tau is not None and max_tau is not None and min_tau > max_tau:
        raise ValueError(
            f"temperature_from_log: min_tau ({min_tau}) must not exceed max_tau "
            f"({max_tau})."
        )
    log_tau = jnp.asarray(log_tau)
    if not jnp.issubdtype(log_tau.dtype, jnp.floating):
        log_tau = log_tau.astype(jnp.result_type(float))
    if min_tau is not None:
        low = math.log(min_tau)
        log_tau = jnp.where(log_tau < low, low, log_tau)
    if max_tau is not None:
        high = math.log(max_tau)
        log_tau = jnp.where(log_tau > high, high, log_tau)
    return jnp.exp(log_tau)

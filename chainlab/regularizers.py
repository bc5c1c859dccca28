"""Jacobian regularization: penalise R(x) = ||df/dx||_F^2 by nested differentiation.

The penalty is itself a derivative, so its gradient with respect to the parameters is a
derivative of a derivative: reverse-over-reverse when R is built from VJPs,
reverse-over-forward when it is built from JVPs. Three ways to compute R for one input
x, with J = df/dx of shape (C, D) (C outputs, D inputs, after flattening):

- ``"exact"``: all of J, by forward mode (D JVPs) when D <= C and by reverse mode
  (C VJPs) otherwise, vmapped over the basis vectors; R = sum_ij J_ij^2.
- ``"projection"`` (Hoffman, Roberts & Yaida 2019): v uniform on the unit sphere in
  output space, so E[v v^T] = I / C and E[C ||v^T J||^2] = ||J||_F^2. One VJP per
  projection.
- ``"forward_projection"``: u ~ N(0, I) in input space, E[u u^T] = I, so
  E[||J u||^2] = ||J||_F^2 (Hutchinson's trace estimator on J^T J). One JVP per probe.

The estimators are unbiased; averaging ``num_projections`` independent probes divides
their variance by ``num_projections``.

Also here: :func:`estimator_variance` (the estimators' variance in closed form),
:func:`jacobian_penalty` (batch mean of R for a Flax-style ``apply_fn``),
:func:`with_jacobian_penalty` (turns a training loss into ``loss + strength * mean R``),
:func:`input_gradient_norm` (per-example sensitivity for robustness analyses), and the
closed-form penalty gradient of a one-hidden-layer network
(:func:`one_hidden_layer_penalty_grad`), derived with matrix calculus.

Reference: J. Hoffman, D. A. Roberts, S. Yaida, "Robust Learning with Jacobian
Regularization", arXiv:1908.02729 (2019).
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

METHODS = ("exact", "projection", "forward_projection")
ACTIVATIONS = ("tanh", "sigmoid", "softplus")


def _check_options(method: str, num_projections: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (
        isinstance(num_projections, bool)
        or not isinstance(num_projections, int)
        or num_projections < 1
    ):
        raise ValueError(
            f"num_projections must be a positive int, got {num_projections!r}"
        )


def _check_key(method: str, key: jax.Array | None) -> None:
    if method != "exact" and key is None:
        raise ValueError(
            f"method={method!r} draws random probes: pass key=jax.random.key(...)"
        )


def _check_inexact(name: str, value: jax.ShapeDtypeStruct | jax.Array) -> None:
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a real floating-point array to be differentiated, "
            f"got dtype {value.dtype}"
        )


def _per_example_sq(a: jax.Array) -> jax.Array:
    """(probes, B, ...) -> (B,): squared norms summed over probes and features."""
    return jnp.sum(jnp.square(a.reshape(a.shape[0], a.shape[1], -1)), axis=(0, 2))


def _broadcast_basis(size: int, batch_shape: tuple[int, ...], dtype) -> jax.Array:
    """(size, B, *feature_shape): basis vector k for every example of the batch."""
    basis = jnp.eye(size, dtype=dtype).reshape(size, 1, *batch_shape[1:])
    return jnp.broadcast_to(basis, (size, *batch_shape))


def _batched_frobenius_sq(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    out: jax.ShapeDtypeStruct,
    method: str,
    key: jax.Array | None,
    num_projections: int,
) -> jax.Array:
    """``(f(x), R)`` with R_b for every example b of x (B, ...), for an f whose
    examples are independent.

    Because example b's outputs depend only on x_b, one JVP (VJP) of the batched f with
    a tangent (cotangent) per example yields every example's J_b u_b (v_b^T J_b) at
    once: each probe costs one batched pass, not one pass per example.
    """
    in_size = math.prod(x.shape[1:])
    out_size = math.prod(out.shape[1:])
    if method == "exact" and in_size <= out_size:
        # Forward mode: one JVP per input direction, J e_j = column j.
        y, jvp_fn = jax.linearize(f, x)
        columns = jax.vmap(jvp_fn)(_broadcast_basis(in_size, x.shape, x.dtype))
        return y, _per_example_sq(columns)
    if method == "exact":
        # Reverse mode: one VJP per output direction, e_i^T J = row i.
        y, vjp_fn = jax.vjp(f, x)
        (rows,) = jax.vmap(vjp_fn)(_broadcast_basis(out_size, out.shape, out.dtype))
        return y, _per_example_sq(rows)
    if method == "projection":
        y, vjp_fn = jax.vjp(f, x)
        v = jax.random.normal(key, (num_projections, *out.shape), dtype=out.dtype)
        axes = tuple(range(2, v.ndim))
        v = v / jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))
        (rows,) = jax.vmap(vjp_fn)(v)
        # C * ||v^T J||^2 with E[v v^T] = I / C, averaged over the probes.
        return y, out_size * _per_example_sq(rows) / num_projections
    y, jvp_fn = jax.linearize(f, x)
    u = jax.random.normal(key, (num_projections, *x.shape), dtype=x.dtype)
    # ||J u||^2 with E[u u^T] = I, averaged over the probes.
    return y, _per_example_sq(jax.vmap(jvp_fn)(u)) / num_projections


def _output_shape(f: Callable, x: jax.Array) -> jax.ShapeDtypeStruct:
    out = jax.eval_shape(f, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            f"f must return a single array, got {jax.tree.structure(out)}; "
            "concatenate the outputs you want penalised"
        )
    _check_inexact("f(x)", out)
    return out


def jacobian_frobenius_sq(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    method: str = "exact",
    key: jax.Array | None = None,
    num_projections: int = 1,
) -> jax.Array:
    """Squared Frobenius norm of the Jacobian of ``f`` at a single input ``x``.

    R(x) = ||df/dx (x)||_F^2 = sum_ij (d f_i / d x_j)^2, with ``f(x)`` and ``x`` of any
    shape (flattened to C outputs and D inputs).

    Args:
      f: function of one array; it may close over parameters, and R is differentiable
        with respect to them (``jax.grad`` of a function that calls this one).
      x: one input (no batch axis: ``jax.vmap`` this function over a batch).
      method: ``"exact"`` (forward mode if D <= C, else reverse mode, vmapped over
        basis vectors), ``"projection"`` (Hoffman et al. 2019: v uniform on the unit
        sphere of output space, estimate C ||v^T J||^2, via VJPs) or
        ``"forward_projection"`` (u ~ N(0, I) in input space, estimate ||J u||^2, via
        JVPs).
      key: PRNG key for the estimators (required by them, ignored by ``"exact"``).
      num_projections: probes averaged by the estimators (variance ~ 1 / this).

    Returns:
      A scalar: the exact value or an unbiased estimate of it.

    Reference: Hoffman, Roberts & Yaida, "Robust Learning with Jacobian
    Regularization", arXiv:1908.02729 (2019).

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
      >>> float(jacobian_frobenius_sq(lambda x: w @ x, jnp.ones(2)))
      91.0
    """
    _check_options(method, num_projections)
    _check_key(method, key)
    x = jnp.asarray(x)
    _check_inexact("x", x)

    out = _output_shape(f, x)

    def batched(z):  # a batch of one, for the shared implementation
        return f(z[0])[None]

    batched_out = jax.ShapeDtypeStruct((1, *out.shape), out.dtype)
    _, r = _batched_frobenius_sq(
        batched, x[None], batched_out, method, key, num_projections
    )
    return r[0]


def estimator_variance(
    jacobian: ArrayLike, *, method: str, num_projections: int = 1
) -> jax.Array:
    """Exact variance of :func:`jacobian_frobenius_sq` for a given Jacobian (C, D).

    With A = J J^T (so tr A = ||J||_F^2) and n = ``num_projections``:

    - ``"exact"``: 0;
    - ``"projection"``: v uniform on the unit sphere of R^C has
      E[(v^T A v)^2] = ((tr A)^2 + 2 tr A^2) / (C (C + 2)), so
      Var[C v^T A v] = 2 C / (C + 2) (tr A^2 - (tr A)^2 / C) / n;
    - ``"forward_projection"``: u ~ N(0, I) gives Var[u^T J^T J u] = 2 tr A^2 / n.

    The projection estimator is never worse: its variance vanishes when all singular
    values of J are equal, the Gaussian one only when J = 0.

    Example:
      >>> import jax.numpy as jnp
      >>> float(estimator_variance(jnp.eye(3), method="projection"))
      0.0
      >>> float(estimator_variance(jnp.eye(3), method="forward_projection"))
      6.0
    """
    _check_options(method, num_projections)
    jacobian = jnp.asarray(jacobian)
    if jacobian.ndim != 2:
        raise ValueError(
            f"jacobian must be a (C, D) matrix, got shape {jacobian.shape}"
        )
    a = jacobian @ jacobian.T
    tr_a = jnp.trace(a)
    tr_a2 = jnp.sum(jnp.square(a))
    size = jacobian.shape[0]
    if method == "exact":
        return jnp.zeros((), a.dtype)
    if method == "projection":
        return 2 * size / (size + 2) * (tr_a2 - tr_a**2 / size) / num_projections
    return 2 * tr_a2 / num_projections


def jacobian_penalty(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: ArrayLike,
    *,
    method: str = "projection",
    key: jax.Array | None = None,
    num_projections: int = 1,
    return_outputs: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Batch mean of ``R(x_b) = ||d apply_fn(params, x)_b / d x_b||_F^2``.

    ``apply_fn(params, x)`` maps a batch ``x`` (B, ...) to outputs (B, ...) (e.g. a
    Flax ``model.apply``) and must treat examples independently (no batch statistics,
    as in batch norm's training mode). Then one batched JVP or VJP per probe gives
    every example's projection at once, as in Hoffman et al.'s implementation: the
    cost is that of ``num_projections`` (or, for ``"exact"``, min(C, D)) extra
    backward or forward passes over the batch. Each example gets its own probes.

    With ``return_outputs=True`` it returns ``(apply_fn(params, x), penalty)``, the
    outputs coming from the forward pass the penalty needs anyway, so a training loss
    can reuse them instead of running the model twice (as Hoffman et al.'s code
    reuses its logits).

    Example:
      >>> import jax.numpy as jnp
      >>> apply_fn = lambda w, x: x @ w  # (batch, 2) @ (2, 3)
      >>> w = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
      >>> float(jacobian_penalty(apply_fn, w, jnp.ones((4, 2)), method="exact"))
      6.0
    """
    _check_options(method, num_projections)
    _check_key(method, key)
    x = jnp.asarray(x)
    _check_inexact("x", x)
    if x.ndim < 1:
        raise ValueError(f"x needs a leading batch axis, got shape {x.shape}")

    def f(z):
        return apply_fn(params, z)

    out = _output_shape(f, x)
    if out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"apply_fn must map a batch of {x.shape[0]} to a batch of outputs, got "
            f"output shape {out.shape}"
        )
    outputs, per_example = _batched_frobenius_sq(
        f, x, out, method, key, num_projections
    )
    penalty = jnp.mean(per_example)
    return (outputs, penalty) if return_outputs else penalty


def _first(batch: Any) -> jax.Array:
    return batch[0]


def with_jacobian_penalty(
    loss_fn: Callable[..., Any],
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    *,
    strength: float,
    method: str = "projection",
    num_projections: int = 1,
    has_aux: bool = False,
    inputs: Callable[[Any], jax.Array] = _first,
) -> Callable[[Any, Any, jax.Array], Any]:
    """Turn ``loss_fn(params, batch, key)`` into ``loss + strength * mean_batch R``.

    R is :func:`jacobian_penalty` of ``apply_fn`` (e.g. a Flax ``model.apply``) on the
    inputs ``inputs(batch)`` (default: ``batch[0]``, as for ``(x, y)`` batches). The
    key is split between the loss and the penalty's probes. With ``has_aux=True``,
    ``loss_fn`` returns ``(loss, metrics)`` and the regularised loss returns
    ``(loss + strength * R, metrics | {"jacobian_penalty": R})``.

    This is the training objective of Hoffman et al. (2019) with their lambda_JR / 2
    as ``strength`` (their penalty is (1/2) ||J||_F^2).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> apply_fn = lambda w, x: x @ w
      >>> mse = lambda w, batch, key: jnp.mean((apply_fn(w, batch[0]) - batch[1]) ** 2)
      >>> loss = with_jacobian_penalty(mse, apply_fn, strength=0.1, method="exact")
      >>> batch = (jnp.ones((4, 2)), jnp.zeros((4, 3)))
      >>> round(float(loss(jnp.eye(2, 3), batch, jax.random.key(0))), 4)
      0.8667
    """
    _check_options(method, num_projections)
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")

    def regularized(params, batch, key):
        loss_key, penalty_key = jax.random.split(key)
        out = loss_fn(params, batch, loss_key)
        penalty = jacobian_penalty(
            apply_fn,
            params,
            inputs(batch),
            method=method,
            key=penalty_key,
            num_projections=num_projections,
        )
        if has_aux:
            loss, metrics = out
            return loss + strength * penalty, {**metrics, "jacobian_penalty": penalty}
        return out + strength * penalty

    return regularized


def input_gradient_norm(f: Callable[[jax.Array], jax.Array], x: ArrayLike) -> jax.Array:
    """Euclidean norm of the input gradient ``||grad_x f(x)||_2`` of a scalar ``f``.

    For a per-example loss L(x) it bounds the first-order change under a perturbation,
    |dL| <= ||grad_x L|| ||dx||, which Jacobian regularization shrinks; ``jax.vmap`` it
    over a batch.

    Example:
      >>> import jax.numpy as jnp
      >>> float(input_gradient_norm(lambda x: 3.0 * x[0] + 4.0 * x[1], jnp.zeros(2)))
      5.0
    """
    x = jnp.asarray(x)
    _check_inexact("x", x)
    out = jax.eval_shape(f, x)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        raise ValueError(f"f must return a scalar, got {out}")
    return jnp.sqrt(jnp.sum(jnp.square(jax.grad(f)(x))))


class OneHiddenLayer(NamedTuple):
    """Parameters of f(x) = w2 s(w1 x + b1) + b2 (w1: (H, D), w2: (C, H))."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array


def _activation_derivatives(z: jax.Array, activation: str):
    """s(z), s'(z) and s''(z) in closed form."""
    if activation == "tanh":
        s = jnp.tanh(z)
        ds = 1 - s**2
        return s, ds, -2 * s * ds
    if activation == "sigmoid":
        s = jax.nn.sigmoid(z)
        ds = s * (1 - s)
        return s, ds, ds * (1 - 2 * s)
    if activation == "softplus":
        ds = jax.nn.sigmoid(z)
        return jax.nn.softplus(z), ds, ds * (1 - ds)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _check_one_hidden_layer(params: OneHiddenLayer, x: jax.Array) -> None:
    hidden, dim = params.w1.shape
    out = params.w2.shape[0]
    expected = {"w1": (hidden, dim), "b1": (hidden,), "w2": (out, hidden), "b2": (out,)}
    for name, shape in expected.items():
        if getattr(params, name).shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} (w1 (H, D), b1 (H,), w2 (C, H), "
                f"b2 (C,)), got {getattr(params, name).shape}"
            )
    if x.shape != (dim,):
        raise ValueError(f"x must have shape ({dim},) to match w1, got {x.shape}")


def one_hidden_layer(
    params: OneHiddenLayer, x: ArrayLike, *, activation: str = "tanh"
) -> jax.Array:
    """f(x) = w2 s(w1 x + b1) + b2 for a single input x of shape (D,).

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((1, 2)), jnp.zeros(1))
      >>> round(float(one_hidden_layer(p, jnp.array([0.5, 0.0]))[0]), 4)
      0.4621
    """
    x = jnp.asarray(x)
    _check_one_hidden_layer(params, x)
    s, _, _ = _activation_derivatives(params.w1 @ x + params.b1, activation)
    return params.w2 @ s + params.b2


def one_hidden_layer_jacobian(
    params: OneHiddenLayer, x: ArrayLike, *, activation: str = "tanh"
) -> jax.Array:
    """J = df/dx = w2 diag(s'(z)) w1, z = w1 x + b1, shape (C, D), in closed form.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((1, 2)), jnp.zeros(1))
      >>> one_hidden_layer_jacobian(p, jnp.zeros(2)).tolist()
      [[1.0, 1.0]]
    """
    x = jnp.asarray(x)
    _check_one_hidden_layer(params, x)
    _, ds, _ = _activation_derivatives(params.w1 @ x + params.b1, activation)
    return params.w2 @ (ds[:, None] * params.w1)


def one_hidden_layer_penalty_grad(
    params: OneHiddenLayer, x: ArrayLike, *, activation: str = "tanh"
) -> tuple[jax.Array, OneHiddenLayer]:
    """R = ||J||_F^2 and dR/dparams for f(x) = w2 s(w1 x + b1) + b2, in closed form.

    With z = w1 x + b1, D = diag(s'(z)) and J = w2 D w1, the differential is
    dR = 2 <J, dJ> and dJ = dw2 D w1 + w2 D dw1 + w2 diag(s''(z) * dz) w1 with
    dz = dw1 x + db1. The vec/Kronecker identity vec(A X B) = (B^T kron A) vec(X) turns
    each term into a linear map of vec(dw), whose transpose gives the gradient:

    - dR/dw2 = 2 J w1^T D (vec(dw2 D w1) = ((D w1)^T kron I) vec(dw2));
    - the curvature term is linear in the diagonal only, <J, w2 diag(g) w1> = <m, g>
      with m_k = (w2^T J w1^T)_kk = sum_j (w2^T J)_kj (w1)_kj, so
      dR/dz = 2 s''(z) * m, and therefore dR/db1 = 2 s''(z) * m;
    - dR/dw1 = 2 D w2^T J + dR/dz x^T (direct term, plus z's dependence on w1);
    - dR/db2 = 0 (J does not depend on b2).

    Returns:
      ``(R, grads)`` with ``grads`` an :class:`OneHiddenLayer` shaped like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((1, 2)), jnp.zeros(1))
      >>> r, g = one_hidden_layer_penalty_grad(p, jnp.zeros(2))
      >>> float(r), g.w2.tolist()
      (2.0, [[2.0, 2.0]])
    """
    x = jnp.asarray(x)
    _check_one_hidden_layer(params, x)
    w1, b1, w2, b2 = params
    _, ds, dds = _activation_derivatives(w1 @ x + b1, activation)
    d_w1 = ds[:, None] * w1  # D w1
    jac = w2 @ d_w1
    penalty = jnp.sum(jnp.square(jac))
    w2t_j = w2.T @ jac  # (H, D)
    grad_w2 = 2 * jac @ d_w1.T
    m = jnp.sum(w2t_j * w1, axis=1)
    grad_z = 2 * dds * m
    grad_w1 = 2 * ds[:, None] * w2t_j + grad_z[:, None] * x[None, :]
    grads = OneHiddenLayer(grad_w1, grad_z, grad_w2, jnp.zeros_like(b2))
    return penalty, grads

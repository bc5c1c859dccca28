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

Model convention: the per-example functions (:func:`jacobian_frobenius_sq`,
:func:`estimator_samples`, :func:`input_gradient_norm`) take a closure ``f(x)``, like
``jax.grad``; the batch and training functions (:func:`jacobian_penalty`,
:func:`penalty_relative_std`, :func:`with_jacobian_penalty`) take
``apply(params, x_batch)``: a Flax linen ``module.apply``, or for Flax NNX
``graphdef, state = nnx.split(model)`` with ``lambda s, x: nnx.merge(graphdef,
s)(x)``. Every ``method`` that has a default defaults to ``"exact"``.
Settings (``num_projections``, ``strength``, ...) are checked when concrete; under
``jit`` a traced ``strength`` is not checked.

Also here: :func:`estimator_variance` (the estimators' variance in closed form),
:func:`estimator_samples` and :func:`estimator_study` (many independent estimates,
and their moments against the exact ones),
:func:`jacobian_penalty` (batch mean of R over a batch) and
:func:`penalty_relative_std` (its estimates' relative spread, in closed form),
:func:`with_jacobian_penalty` (turns a training loss into ``loss + strength * mean R``),
:func:`penalized_classification_loss` (cross-entropy + strength * mean R, one forward
pass),
:func:`input_gradient_norm` (per-example sensitivity for robustness analyses), and the
closed-form penalty gradient of a one-hidden-layer network
(:func:`one_hidden_layer_penalty_grad`, derived with matrix calculus, and
:func:`one_hidden_layer_mean_penalty_grad`, its batch mean set against autodiff,
with :func:`one_hidden_layer_grad_errors` measuring their agreement).

Reference: J. Hoffman, D. A. Roberts, S. Yaida, "Robust Learning with Jacobian
Regularization", arXiv:1908.02729 (2019).
"""

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.losses import cross_entropy
from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_finite,
    check_nonnegative,
    check_rank,
    check_scalar_output,
    check_shape,
)

__all__ = [
    "METHODS",
    "EstimatorStudy",
    "OneHiddenLayer",
    "estimator_samples",
    "estimator_study",
    "estimator_variance",
    "input_gradient_norm",
    "jacobian_frobenius_sq",
    "jacobian_penalty",
    "one_hidden_layer",
    "one_hidden_layer_grad_errors",
    "one_hidden_layer_jacobian",
    "one_hidden_layer_mean_penalty_grad",
    "one_hidden_layer_penalty_grad",
    "penalized_classification_loss",
    "penalty_relative_std",
    "with_jacobian_penalty",
]

Method = Literal["exact", "projection", "forward_projection"]
METHODS = ("exact", "projection", "forward_projection")
Activation = Callable[[jax.Array], jax.Array]


def _require_key(method: str, key: jax.Array | None) -> None:
    if method != "exact" and key is None:
        raise ValueError(
            f"key is required by method={method!r}, which draws random probes: pass "
            "key=jax.random.key(...)"
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
    method: Method,
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
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"f(x) must be a real floating-point array to be differentiated, got "
            f"dtype {out.dtype}"
        )
    return out


def jacobian_frobenius_sq(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    method: Method = "exact",
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
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    _require_key(method, key)
    x = as_real_float("x", x)

    out = _output_shape(f, x)

    def batched(z):  # a batch of one, for the shared implementation
        return f(z[0])[None]

    batched_out = jax.ShapeDtypeStruct((1, *out.shape), out.dtype)
    _, r = _batched_frobenius_sq(
        batched, x[None], batched_out, method, key, num_projections
    )
    return r[0]


def estimator_variance(
    jacobian: ArrayLike, *, method: Method, num_projections: int = 1
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
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    jacobian = as_real_float("jacobian", jacobian)
    check_rank("jacobian", jacobian, 2)
    a = jacobian @ jacobian.T
    tr_a = jnp.trace(a)
    tr_a2 = jnp.sum(jnp.square(a))
    size = jacobian.shape[0]
    if method == "exact":
        return jnp.zeros((), a.dtype)
    if method == "projection":
        return 2 * size / (size + 2) * (tr_a2 - tr_a**2 / size) / num_projections
    return 2 * tr_a2 / num_projections


def estimator_samples(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    method: Literal["projection", "forward_projection"],
    key: jax.Array,
    num_draws: int,
    num_projections: int = 1,
    chunk: int | None = None,
) -> jax.Array:
    """``num_draws`` independent estimates of ||J||_F^2 at ``x``, shape (num_draws,).

    Draw k is :func:`jacobian_frobenius_sq` with ``key=jax.random.split(key,
    num_draws)[k]``, so their sample mean and variance estimate the estimator's mean
    (||J||_F^2: unbiased) and its variance (:func:`estimator_variance` in closed
    form), with standard error ``sqrt(variance / num_draws)`` on the mean. The draws
    are evaluated ``chunk`` at a time (``lax.map``), which bounds memory at
    ``chunk * num_projections`` probes; ``None`` evaluates them all at once.

    ``f`` is the per-example closure ``f(x)`` of :func:`jacobian_frobenius_sq`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> w = jnp.array([[3.0, 4.0]])  # one output: the projection is exact
      >>> draws = estimator_samples(lambda x: w @ x, jnp.ones(2), method="projection",
      ...                           key=jax.random.key(0), num_draws=3)
      >>> [round(draw, 4) for draw in draws.tolist()]
      [25.0, 25.0, 25.0]
    """
    check_choice("method", method, METHODS[1:])
    check_at_least("num_draws", num_draws, 1)
    check_at_least("num_projections", num_projections, 1)
    if chunk is not None:
        check_at_least("chunk", chunk, 1)

    def one(k):
        return jacobian_frobenius_sq(
            f, x, method=method, key=k, num_projections=num_projections
        )

    keys = jax.random.split(key, num_draws)
    return jax.lax.map(one, keys, batch_size=chunk)


class EstimatorStudy(NamedTuple):
    """What :func:`estimator_study` measures: P num_projections by E examples."""

    num_projections: tuple[int, ...]
    exact: jax.Array  # (E,) ||J||_F^2
    mean: jax.Array  # (P, E) sample means of the draws
    variance: jax.Array  # (P, E) sample variances of the draws
    predicted_variance: jax.Array  # (P, E) estimator_variance, in closed form
    z_score: jax.Array  # (P, E) |mean - exact| / standard error of the mean

    def relative_variance(self, *, predicted: bool = False) -> jax.Array:
        """(P,) mean over examples of variance / exact^2 (sampled or predicted)."""
        variance = self.predicted_variance if predicted else self.variance
        return jnp.mean(variance / jnp.square(self.exact)[None, :], axis=1)

    def log_log_slope(self) -> float:
        """Least-squares slope of log relative variance against log num_projections:
        -1 for variance ~ 1 / num_projections (needs two or more num_projections)."""
        log_n = jnp.log(jnp.asarray(self.num_projections, jnp.float32))
        log_v = jnp.log(self.relative_variance()).astype(jnp.float32)
        centred = log_n - jnp.mean(log_n)
        return float(jnp.sum(centred * (log_v - jnp.mean(log_v))) / jnp.sum(centred**2))

    def summary(self) -> dict[str, Any]:
        """Plain lists and floats (JSON-ready): the moments, the relative variances
        (sampled and predicted), the largest z-score and, with two or more
        num_projections, the log-log slope."""
        summary = {
            "num_projections": list(self.num_projections),
            "exact": self.exact.tolist(),
            "mean": self.mean.tolist(),
            "variance": self.variance.tolist(),
            "relative_variance": self.relative_variance().tolist(),
            "predicted_relative_variance": self.relative_variance(
                predicted=True
            ).tolist(),
            "max_z": float(jnp.max(self.z_score)),
        }
        if len(self.num_projections) > 1:
            summary["log_log_slope"] = self.log_log_slope()
        return summary


def estimator_study(
    f: Callable[[jax.Array], jax.Array],
    xs: ArrayLike,
    *,
    method: Literal["projection", "forward_projection"],
    key: jax.Array,
    num_draws: int,
    num_projections: Sequence[int] = (1,),
    chunk: int | None = None,
) -> EstimatorStudy:
    """An estimator's sample moments against its exact mean and variance.

    For every example x of ``xs`` (E, ...) and every n of ``num_projections``:
    ``num_draws`` estimates as :func:`estimator_samples` (all examples share
    ``key``), their mean and variance, the exact ||J||_F^2 (J by ``jax.jacrev``) and
    :func:`estimator_variance` of J. An unbiased estimator has ``z_score`` of order 1
    (below 4.5 in 100 cells with probability above 0.999); the sample variance
    approaches the predicted one, which falls as 1 / n. One compiled program per n.

    ``f`` is the per-example closure ``f(x)`` of :func:`jacobian_frobenius_sq`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> w = jnp.array([[3.0, 4.0]])  # one output: the projection is exact
      >>> s = estimator_study(lambda x: w @ x, jnp.ones((1, 2)), method="projection",
      ...                     key=jax.random.key(0), num_draws=4)
      >>> s.exact.tolist(), s.predicted_variance.tolist()
      ([25.0], [[0.0]])
      >>> bool(jnp.allclose(s.mean, 25.0))  # a sum of four draws, to round-off
      True
    """
    xs = as_real_float("xs", xs)
    if xs.ndim < 1:
        raise ValueError(
            f"xs must stack examples on a leading axis, got shape {xs.shape}"
        )
    for n in num_projections:
        check_at_least("num_projections", n, 1)
    jacobians = jax.jit(jax.vmap(lambda x: jax.jacrev(f)(x).reshape(-1, x.size)))(xs)
    exact = jnp.sum(jnp.square(jacobians), axis=(1, 2))
    moments = []
    for n in num_projections:
        draw = partial(
            estimator_samples,
            f,
            method=method,
            key=key,
            num_draws=num_draws,
            num_projections=n,
            chunk=chunk,
        )
        draws = jax.jit(lambda xs, draw=draw: jax.lax.map(draw, xs))(xs)  # (E, K)
        predicted = jax.vmap(
            partial(estimator_variance, method=method, num_projections=n)
        )(jacobians)
        moments.append((jnp.mean(draws, 1), jnp.var(draws, 1), predicted))
    mean, variance, predicted = (jnp.stack(m) for m in zip(*moments, strict=True))
    stderr = jnp.sqrt(variance / num_draws)
    error = jnp.abs(mean - exact[None, :])
    z_score = error / jnp.maximum(stderr, jnp.finfo(stderr.dtype).tiny)
    return EstimatorStudy(
        tuple(num_projections), exact, mean, variance, predicted, z_score
    )


def jacobian_penalty(
    apply: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: ArrayLike,
    *,
    method: Method = "exact",
    key: jax.Array | None = None,
    num_projections: int = 1,
    return_outputs: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Batch mean of ``R(x_b) = ||d apply(params, x)_b / d x_b||_F^2``.

    ``apply(params, x_batch)`` maps a batch ``x`` (B, ...) to outputs (B, ...): a Flax
    linen ``module.apply``, or for Flax NNX ``graphdef, state = nnx.split(model)`` with
    ``lambda s, x: nnx.merge(graphdef, s)(x)``. It must treat examples independently
    (no batch statistics, as in batch norm's training mode). ``method``, ``key`` and
    ``num_projections`` are as in :func:`jacobian_frobenius_sq` (default ``"exact"``).
    Then one batched JVP or VJP per probe gives
    every example's projection at once, as in Hoffman et al.'s implementation: the
    cost is that of ``num_projections`` (or, for ``"exact"``, min(C, D)) extra
    backward or forward passes over the batch. Each example gets its own probes.

    With ``return_outputs=True`` it returns ``(apply(params, x), penalty)``, the
    outputs coming from the forward pass the penalty needs anyway, so a training loss
    can reuse them instead of running the model twice (as Hoffman et al.'s code
    reuses its logits).

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w  # (batch, 2) @ (2, 3)
      >>> w = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
      >>> float(jacobian_penalty(apply, w, jnp.ones((4, 2)), method="exact"))
      6.0
    """
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    _require_key(method, key)
    x = as_real_float("x", x)
    if x.ndim < 1:
        raise ValueError(f"x needs a leading batch axis, got shape {x.shape}")

    def f(z):
        return apply(params, z)

    out = _output_shape(f, x)
    if out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"apply must map a batch of {x.shape[0]} to a batch of outputs, got "
            f"output shape {out.shape}"
        )
    outputs, per_example = _batched_frobenius_sq(
        f, x, out, method, key, num_projections
    )
    penalty = jnp.mean(per_example)
    return (outputs, penalty) if return_outputs else penalty


def penalty_relative_std(
    apply: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: ArrayLike,
    *,
    method: Method,
    num_projections: int = 1,
) -> jax.Array:
    """Standard deviation of one :func:`jacobian_penalty` estimate over its mean.

    Every example b draws its own probes, so the batch mean of the estimates has
    variance sum_b Var_b / B^2 with Var_b = :func:`estimator_variance` of J_b, and
    the relative std is sqrt(sum_b Var_b) / B / mean_b ||J_b||_F^2, in closed form
    (J_b by ``jax.jacrev``). ``apply(params, x_batch)`` is as in
    :func:`jacobian_penalty`: a Flax linen ``module.apply``, or for Flax NNX
    ``graphdef, state = nnx.split(model)`` with ``lambda s, x: nnx.merge(graphdef,
    s)(x)``.

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w  # J = w^T for every example
      >>> w = jnp.eye(2, 3)
      >>> float(penalty_relative_std(apply, w, jnp.ones((4, 2)),
      ...                            method="forward_projection"))
      0.5
    """
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    x = as_real_float("x", x)
    if x.ndim < 1:
        raise ValueError(f"x needs a leading batch axis, got shape {x.shape}")

    def jacobian(z):  # (C, D) of one example
        return jax.jacrev(lambda v: apply(params, v[None])[0])(z).reshape(-1, z.size)

    jacobians = jax.vmap(jacobian)(x)
    variances = jax.vmap(
        partial(estimator_variance, method=method, num_projections=num_projections)
    )(jacobians)
    exact = jnp.sum(jnp.square(jacobians), axis=(1, 2))
    return jnp.sqrt(jnp.sum(variances)) / len(x) / jnp.mean(exact)


def _first(batch: Any) -> jax.Array:
    return batch[0]


def with_jacobian_penalty(
    loss_fn: Callable[..., Any],
    apply: Callable[[Any, jax.Array], jax.Array],
    *,
    strength: float,
    method: Method = "exact",
    num_projections: int = 1,
    has_aux: bool = False,
    inputs: Callable[[Any], jax.Array] = _first,
) -> Callable[[Any, Any, jax.Array], Any]:
    """Turn ``loss_fn(params, batch, key)`` into ``loss + strength * mean_batch R``.

    R is :func:`jacobian_penalty` of ``apply(params, x_batch)`` (a Flax linen
    ``module.apply``, or an NNX model split as in :func:`jacobian_penalty`) on the
    inputs ``inputs(batch)`` (default: ``batch[0]``, as for ``(x, y)`` batches). The
    key is split between the loss and the penalty's probes. With ``has_aux=True``,
    ``loss_fn`` returns ``(loss, metrics)`` and the regularised loss returns
    ``(loss + strength * R, metrics | {"jacobian_penalty": R})``.

    This is the training objective of Hoffman et al. (2019) with their lambda_JR / 2
    as ``strength`` (their penalty is (1/2) ||J||_F^2). ``strength >= 0`` is checked
    when it is concrete (a traced strength is not checked).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> mse = lambda w, batch, key: jnp.mean((apply(w, batch[0]) - batch[1]) ** 2)
      >>> loss = with_jacobian_penalty(mse, apply, strength=0.1, method="exact")
      >>> batch = (jnp.ones((4, 2)), jnp.zeros((4, 3)))
      >>> round(float(loss(jnp.eye(2, 3), batch, jax.random.key(0))), 4)
      0.8667
    """
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    check_nonnegative("strength", strength)
    check_finite("strength", strength)

    def regularized(params, batch, key):
        loss_key, penalty_key = jax.random.split(key)
        out = loss_fn(params, batch, loss_key)
        penalty = jacobian_penalty(
            apply,
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


def penalized_classification_loss(
    apply: Callable[[Any, jax.Array], jax.Array],
    *,
    strength: float,
    method: Method = "exact",
    num_projections: int = 1,
) -> Callable[[Any, tuple[jax.Array, jax.Array], jax.Array], jax.Array]:
    """Cross-entropy + strength * mean R, the logits from the penalty's forward pass.

    ``loss_fn(params, (x, y), key)`` = mean_b CE(z_b, y_b) + strength * mean_b R(x_b)
    where z = ``apply(params, x)`` are the logits, CE is
    :func:`chainlab.losses.cross_entropy` and the penalty is :func:`jacobian_penalty`
    with ``method``, ``num_projections`` and the whole ``key``. The logits come from
    the forward pass the penalty runs anyway (``return_outputs=True``), so the model
    runs once per step, as in Hoffman et al.'s code; :func:`with_jacobian_penalty`
    wraps any loss instead, at the price of a second forward pass. ``strength >= 0``
    is checked when it is concrete.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = penalized_classification_loss(lambda w, x: x @ w, strength=0.1)
      >>> batch = (jnp.ones((4, 2)), jnp.zeros(4, dtype=jnp.int32))
      >>> # logits (1, 1, 0): CE = log(2e + 1) - 1 = 0.862; J = w^T: R = 2
      >>> round(float(loss(jnp.eye(2, 3), batch, jax.random.key(0))), 4)
      1.062
    """
    check_choice("method", method, METHODS)
    check_at_least("num_projections", num_projections, 1)
    check_nonnegative("strength", strength)
    check_finite("strength", strength)
    options = {"method": method, "num_projections": num_projections}

    def loss_fn(params, batch, key):
        x, y = batch
        logits, penalty = jacobian_penalty(
            apply, params, x, key=key, return_outputs=True, **options
        )
        return jnp.mean(cross_entropy(logits, y)) + strength * penalty

    return loss_fn


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
    x = as_real_float("x", x)
    check_scalar_output("f", f, x)
    return jnp.sqrt(jnp.sum(jnp.square(jax.grad(f)(x))))


class OneHiddenLayer(NamedTuple):
    """Parameters of f(x) = s(x @ w1 + b1) @ w2 + b2, weights (in, out) as in Flax.

    ``w1`` (D, H), ``b1`` (H,), ``w2`` (H, C), ``b2`` (C,). A two-layer
    :class:`chainlab.models.MLP` gives them by structure:
    ``OneHiddenLayer.from_layers(chainlab.models.dense_layers(params))``, and the
    same for its gradients.
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array

    @classmethod
    def from_layers(cls, layers: Sequence[dict[str, jax.Array]]) -> "OneHiddenLayer":
        """From two ``{"kernel", "bias"}`` layers in network order.

        Example:
          >>> import jax, jax.numpy as jnp
          >>> from chainlab.models import MLP, dense_layers
          >>> params = MLP((3, 2)).init(jax.random.key(0), jnp.zeros(4))
          >>> OneHiddenLayer.from_layers(dense_layers(params)).w2.shape
          (3, 2)
        """
        if len(layers) != 2:
            raise ValueError(
                f"layers must be the two layers of a one-hidden-layer network, got "
                f"{len(layers)}"
            )
        (hidden, out) = layers
        return cls(hidden["kernel"], hidden["bias"], out["kernel"], out["bias"])


def _tanh_derivatives(z: jax.Array):
    s = jnp.tanh(z)
    ds = 1 - s**2
    return s, ds, -2 * s * ds


def _sigmoid_derivatives(z: jax.Array):
    s = jax.nn.sigmoid(z)
    ds = s * (1 - s)
    return s, ds, ds * (1 - 2 * s)


def _softplus_derivatives(z: jax.Array):
    ds = jax.nn.sigmoid(z)
    return jax.nn.softplus(z), ds, ds * (1 - ds)


_CLOSED_FORM_DERIVATIVES = {
    jnp.tanh: _tanh_derivatives,
    jax.nn.sigmoid: _sigmoid_derivatives,
    jax.nn.softplus: _softplus_derivatives,
}


def _activation_derivatives(z: jax.Array, activation: Activation):
    """s(z), s'(z) and s''(z): in closed form for tanh, sigmoid and softplus; for any
    other elementwise activation by scalar autodiff."""
    closed_form = _CLOSED_FORM_DERIVATIVES.get(activation)
    if closed_form is not None:
        return closed_form(z)
    if not callable(activation):
        raise TypeError(f"activation must be a callable, got {activation!r}")
    ds = jax.grad(activation)
    dds = jax.grad(ds)
    flat = z.reshape(-1)
    return (
        activation(z),
        jax.vmap(ds)(flat).reshape(z.shape),
        jax.vmap(dds)(flat).reshape(z.shape),
    )


def _checked(params: OneHiddenLayer, x: ArrayLike) -> tuple[OneHiddenLayer, jax.Array]:
    """Real float arrays of matching shapes: w1 (D, H), b1 (H,), w2 (H, C), b2 (C,)."""
    params = OneHiddenLayer(
        *(as_real_float(n, p) for n, p in zip(params._fields, params, strict=True))
    )
    check_rank("w1", params.w1, 2)
    check_rank("w2", params.w2, 2)
    dim, hidden = params.w1.shape
    out = params.w2.shape[1]
    check_shape("b1", params.b1, (hidden,))
    check_shape("w2", params.w2, (hidden, None))
    check_shape("b2", params.b2, (out,))
    x = as_real_float("x", x)
    check_shape("x", x, (dim,))
    return params, x


def one_hidden_layer(
    params: OneHiddenLayer, x: ArrayLike, *, activation: Activation = jnp.tanh
) -> jax.Array:
    """f(x) = s(x @ w1 + b1) @ w2 + b2 for a single input x of shape (D,).

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))
      >>> round(float(one_hidden_layer(p, jnp.array([0.5, 0.0]))[0]), 4)
      0.4621
    """
    (w1, b1, w2, b2), x = _checked(params, x)
    s, _, _ = _activation_derivatives(x @ w1 + b1, activation)
    return s @ w2 + b2


def one_hidden_layer_jacobian(
    params: OneHiddenLayer, x: ArrayLike, *, activation: Activation = jnp.tanh
) -> jax.Array:
    """J = df/dx = w2^T diag(s'(z)) w1^T, z = x @ w1 + b1, shape (C, D), closed form.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))
      >>> one_hidden_layer_jacobian(p, jnp.zeros(2)).tolist()
      [[1.0, 1.0]]
    """
    (w1, b1, w2, _), x = _checked(params, x)
    _, ds, _ = _activation_derivatives(x @ w1 + b1, activation)
    return ((w1 * ds[None, :]) @ w2).T


def one_hidden_layer_penalty_grad(
    params: OneHiddenLayer, x: ArrayLike, *, activation: Activation = jnp.tanh
) -> tuple[jax.Array, OneHiddenLayer]:
    """R = ||J||_F^2 and dR/dparams for f(x) = s(x @ w1 + b1) @ w2 + b2, closed form.

    Weights are (in, out): w1 (D, H), w2 (H, C). With z = x @ w1 + b1, S = diag(s'(z))
    and J = w2^T S w1^T (C, D), the differential is dR = 2 <J, dJ> with
    dJ = dw2^T S w1^T + w2^T S dw1^T + w2^T diag(s''(z) * dz) w1^T and
    dz = x @ dw1 + db1. Moving each d(.) out of the trace, <A, B> = tr(A^T B):

    - dR/dw2 = 2 S w1^T J^T (H, C);
    - the curvature term is linear in the diagonal only, <J, w2^T diag(g) w1^T> =
      <m, g> with m_h = sum_d (w2 J)_hd (w1)_dh, so dR/dz = 2 s''(z) * m and
      dR/db1 = dR/dz;
    - dR/dw1 = 2 (w2 J)^T S + x (dR/dz)^T (direct term, plus z's dependence on w1);
    - dR/db2 = 0 (J does not depend on b2).

    Matrix calculus as in K. B. Petersen, M. S. Pedersen, "The Matrix Cookbook" (2012).
    ``activation`` is a callable: tanh, sigmoid and softplus have s' and s'' in closed
    form, any other elementwise activation gets them by scalar autodiff.

    Returns:
      ``(R, grads)`` with ``grads`` an :class:`OneHiddenLayer` shaped like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))
      >>> r, g = one_hidden_layer_penalty_grad(p, jnp.zeros(2))
      >>> float(r), g.w2.tolist()
      (2.0, [[2.0], [2.0]])
    """
    (w1, b1, w2, b2), x = _checked(params, x)
    _, ds, dds = _activation_derivatives(x @ w1 + b1, activation)
    w1_s = w1 * ds[None, :]  # w1 S, (D, H)
    jac = (w1_s @ w2).T  # (C, D)
    w2_j = w2 @ jac  # (H, D)
    grad_w2 = 2 * w1_s.T @ jac.T
    m = jnp.sum(w2_j.T * w1, axis=0)
    grad_z = 2 * dds * m
    grad_w1 = 2 * w2_j.T * ds[None, :] + jnp.outer(x, grad_z)
    grads = OneHiddenLayer(grad_w1, grad_z, grad_w2, jnp.zeros_like(b2))
    return jnp.sum(jnp.square(jac)), grads


def one_hidden_layer_mean_penalty_grad(
    params: OneHiddenLayer,
    xs: ArrayLike,
    *,
    activation: Activation = jnp.tanh,
    method: Literal["closed_form", "autodiff"] = "closed_form",
) -> OneHiddenLayer:
    """dR/dparams averaged over the inputs ``xs`` (N, D), two ways.

    ``"closed_form"``: the mean of :func:`one_hidden_layer_penalty_grad` (matrix
    calculus); ``"autodiff"``: ``jax.grad`` of the mean of
    :func:`jacobian_frobenius_sq` (exact) of :func:`one_hidden_layer`, a derivative
    of a derivative. The two agree to round-off, which tests the derivation.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))
      >>> xs = jnp.array([[0.3, -0.2], [0.1, 0.5]])
      >>> a, c = (one_hidden_layer_mean_penalty_grad(p, xs, method=m)
      ...         for m in ("autodiff", "closed_form"))
      >>> bool(jnp.allclose(a.w1, c.w1, atol=1e-6)), c.b2.tolist()
      (True, [0.0])
    """
    check_choice("method", method, ("closed_form", "autodiff"))
    xs = as_real_float("xs", xs)
    check_rank("xs", xs, 2)
    if method == "closed_form":
        grad = partial(one_hidden_layer_penalty_grad, params, activation=activation)
        _, grads = jax.vmap(grad)(xs)
        return jax.tree.map(partial(jnp.mean, axis=0), grads)

    def mean_penalty(p):
        f = partial(one_hidden_layer, p, activation=activation)
        return jnp.mean(jax.vmap(partial(jacobian_frobenius_sq, f))(xs))

    return OneHiddenLayer(*jax.grad(mean_penalty)(OneHiddenLayer(*params)))


def one_hidden_layer_grad_errors(
    params: OneHiddenLayer, xs: ArrayLike, *, activation: Activation = jnp.tanh
) -> dict[str, Any]:
    """How far the closed-form mean dR/dparams is from autodiff's, per parameter.

    With c and a the ``"closed_form"`` and ``"autodiff"`` results of
    :func:`one_hidden_layer_mean_penalty_grad` (each jitted, matrix products at
    ``"highest"`` precision: GPUs multiply float32 in TF32 by default), the relative
    error of parameter p is e_p = ||c_p - a_p||_F / ||a_p||_F for p in w1, b1, w2.
    dR/db2 is zero (J does not depend on b2), so b2 gets the absolute
    max |c_b2| + max |a_b2|, which is 0 when both are exactly zero.

    Returns:
      JSON-ready ``{"relative_error": {"w1": e, "b1": e, "w2": e},
      "max_relative_error": max_p e_p, "b2_max_abs": float}``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = OneHiddenLayer(jnp.eye(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))
      >>> errors = one_hidden_layer_grad_errors(p, jnp.array([[0.3, -0.2]]))
      >>> errors["max_relative_error"] < 1e-6, errors["b2_max_abs"]
      (True, 0.0)
    """
    mean_grad = partial(one_hidden_layer_mean_penalty_grad, activation=activation)
    with jax.default_matmul_precision("highest"):
        auto, closed = (
            jax.jit(partial(mean_grad, method=method))(params, xs)
            for method in ("autodiff", "closed_form")
        )
    errors = {}
    for name in ("w1", "b1", "w2"):
        c, a = getattr(closed, name), getattr(auto, name)
        errors[name] = float(jnp.linalg.norm(c - a) / jnp.linalg.norm(a))
    return {
        "relative_error": errors,
        "max_relative_error": max(errors.values()),
        "b2_max_abs": float(jnp.max(jnp.abs(closed.b2)) + jnp.max(jnp.abs(auto.b2))),
    }

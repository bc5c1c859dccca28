"""Integrated gradients: attributions from the chain rule and the fundamental theorem.

For a scalar function ``F``, an input ``x`` and a baseline ``x'``, the straight path
``gamma(alpha) = x' + alpha (x - x')`` has, by the chain rule,
``dF(gamma(alpha))/dalpha = grad F(gamma(alpha)) . (x - x')``, so integrating over
``alpha`` in [0, 1] gives

    F(x) - F(x') = sum_i (x_i - x'_i) int_0^1 dF/dx_i(x' + alpha (x - x')) dalpha
                 = sum_i IG_i(x),

the integrated gradients of Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep
Networks", ICML 2017 (https://arxiv.org/abs/1703.01365). That identity is
*completeness*; ``completeness_delta`` measures how far a quadrature is from it.

The integral is a quadrature ``sum_k w_k grad F(x' + alpha_k (x - x'))`` with the
nodes of Captum's ``captum/attr/_utils/approximation_methods.py`` (so the numbers are
comparable), except for the trapezoid rule, see ``quadrature_rule``. All path points
are evaluated in one vectorised pass (``jax.vmap`` of ``jax.grad``); ``chunk_size``
bounds the memory by scanning over chunks of nodes instead. Batches are done with
``jax.vmap`` over inputs.

Every function here takes the model as a closure ``f(x)`` of one example, returning a
scalar (like ``jax.grad``): for a Flax linen model, ``lambda x: model.apply(params,
x)[label]``; for Flax NNX, ``graphdef, state = nnx.split(model)`` and ``lambda x:
nnx.merge(graphdef, state)(x)[label]``. Batches are ``jax.vmap`` over examples (and
labels), or :func:`batch_integrated_gradients` for a batch model ``apply(params,
x_batch)`` in one backward pass per chunk of path points. Settings (``steps >= 1``,
``sigma > 0``, ``rtol > 0``, ...) are Python values that fix the program and are
always checked; shapes and dtypes are checked at trace time, under ``jit`` too.

Also here: baselines (``blurred_baseline``, ``uniform_baselines`` for expected
gradients), a general path (``path_integrated_gradients``), a step-doubling helper
(``integrated_gradients_to_tolerance``), the convergence study ``completeness_errors``,
plain ``gradient_x_input`` and the faithfulness check ``deletion_curve`` with its
``deletion_area``.

Attribution to a hidden layer, for a model split as ``F(x) = head(body(x))`` with the
layer ``y = body(x)``: ``layer_conductance`` (Dhamdhere, Sundararajan & Yan, "How
Important Is a Neuron?", ICLR 2019, arXiv:1805.12233) integrates, for each unit ``j``,
``dF/dy_j`` times the unit's own rate of change ``dy_j/dalpha`` along the input path,
so by the chain rule ``sum_j Cond_j = F(x) - F(x')``; ``layer_integrated_gradients``
is integrated gradients of ``head`` in the layer's space, on the straight line from
``body(x')`` to ``body(x)``. They answer Captum's ``LayerConductance`` and
``LayerIntegratedGradients``, with this module's quadrature rules.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_dtype,
    check_positive,
    check_scalar_output,
    check_shape,
)

__all__ = [
    "METHODS",
    "POINTS_PER_PASS",
    "BatchAttribution",
    "CompletenessErrors",
    "ToleranceResult",
    "batch_integrated_gradients",
    "blurred_baseline",
    "completeness_delta",
    "completeness_errors",
    "deletion_area",
    "deletion_curve",
    "expected_integrated_gradients",
    "gradient_x_input",
    "integrated_gradients",
    "integrated_gradients_to_tolerance",
    "layer_conductance",
    "layer_integrated_gradients",
    "path_integrated_gradients",
    "quadrature_rule",
    "uniform_baselines",
]

Method = Literal[
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
]
METHODS: tuple[Method, ...] = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def quadrature_rule(method: Method, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha_k`` in [0, 1] and weights ``w_k`` of a rule for ``int_0^1``.

    With ``n = steps``:

    - ``riemann_left``: ``alpha_k = k / n``, ``k = 0..n-1``, ``w_k = 1 / n``;
    - ``riemann_right``: ``alpha_k = (k + 1) / n``, ``w_k = 1 / n``;
    - ``riemann_middle``: ``alpha_k = (k + 1/2) / n``, ``w_k = 1 / n``;
    - ``riemann_trapezoid``: ``alpha_k = k / (n - 1)``, ``w_k = 1 / (n - 1)`` with both
      ends halved (needs ``n >= 2``);
    - ``gausslegendre``: the ``n``-point Gauss-Legendre rule mapped from [-1, 1] to
      [0, 1] (exact for polynomials of degree ``2n - 1``).

    The nodes are Captum's. Captum's ``riemann_trapezoid`` however keeps the weights
    ``1 / n`` (ends halved) on the nodes ``k / (n - 1)``, so its weights sum to
    ``(n - 1) / n``: every attribution is scaled by about ``1 - 1/n`` and completeness
    is off by about ``|F(x) - F(x')| / n`` however smooth ``F`` is. Here the weights are
    the true trapezoid weights, which sum to 1 (exact for linear integrands, error
    ``O(1/n^2)``). Captum asks for ``n > 1`` with every Riemann rule; here the left,
    right and middle rules also accept ``n = 1``.

    Args:
      method: one of ``METHODS``.
      steps: the number of nodes, a Python int (it fixes array shapes).

    Returns:
      ``(alphas, weights)``, float64 NumPy arrays of shape ``(steps,)`` (static
      constants, cast to the input's dtype by the callers).

    Example:
      >>> alphas, weights = quadrature_rule("riemann_trapezoid", 3)
      >>> alphas.tolist(), weights.tolist()
      ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    check_choice("method", method, METHODS)
    check_at_least("steps", steps, 2 if method == "riemann_trapezoid" else 1)
    n = int(steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1.0 + nodes), 0.5 * weights
    if method == "riemann_trapezoid":
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
        return np.linspace(0.0, 1.0, n), weights
    start = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(n) + start) / n, np.full(n, 1.0 / n)


def _as_input(x: ArrayLike, baseline: ArrayLike | None) -> tuple[jax.Array, jax.Array]:
    """``x`` and ``baseline`` as arrays of one real floating dtype and one shape."""
    x = as_real_float("x", x)
    if baseline is None:
        return x, jnp.zeros_like(x)
    baseline = as_real_float("baseline", baseline)
    check_shape("baseline", baseline, x.shape)
    dtype = jnp.result_type(x, baseline)
    return x.astype(dtype), baseline.astype(dtype)


_SCALAR_HINT = (
    "; select one output of one example, e.g. lambda x: model.apply(params, "
    "x[None])[0, label] for a batch-first model, or attribute a whole batch with "
    "batch_integrated_gradients(model.apply, params, x_batch, labels)"
)


def _like(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _integrate(
    integrand: Callable[[jax.Array], jax.Array],
    like: jax.Array,
    method: str,
    steps: int,
    chunk_size: int | None,
) -> jax.Array:
    """``sum_k w_k integrand(alpha_k)``, all nodes in one pass or in chunks."""
    if chunk_size is not None:
        check_at_least("chunk_size", chunk_size, 1)
    alphas, weights = quadrature_rule(method, steps)
    if chunk_size is None or chunk_size >= steps:
        values = jax.vmap(integrand)(jnp.asarray(alphas, like.dtype))
        return jnp.tensordot(jnp.asarray(weights, like.dtype), values, axes=1)
    # Pad to whole chunks with zero-weight copies of the last node (a node where the
    # integrand is already evaluated, so padding cannot bring in a NaN of its own).
    num_chunks = -(-steps // chunk_size)
    pad = num_chunks * chunk_size - steps
    alphas = np.concatenate([alphas, np.full(pad, alphas[-1])])
    weights = np.concatenate([weights, np.zeros(pad)])
    chunks = (
        jnp.asarray(alphas.reshape(num_chunks, chunk_size), like.dtype),
        jnp.asarray(weights.reshape(num_chunks, chunk_size), like.dtype),
    )

    def add_chunk(total, chunk):
        a, w = chunk
        return total + jnp.tensordot(w, jax.vmap(integrand)(a), axes=1), None

    total, _ = jax.lax.scan(add_chunk, jnp.zeros_like(like), chunks)
    return total


def integrated_gradients(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | None = None,
) -> jax.Array:
    """Integrated gradients of a scalar ``f`` at ``x`` along the straight path.

    ``IG_i(x) = (x_i - x'_i) sum_k w_k df/dx_i(x' + alpha_k (x - x'))`` with the nodes
    and weights of ``quadrature_rule(method, steps)``; by completeness
    ``sum_i IG_i = f(x) - f(x')`` up to the quadrature error.

    Reference: Sundararajan, Taly & Yan, ICML 2017, eq. (1) and Sec. 5.

    Args:
      f: the model as a closure of one example returning a scalar (see the module
        docstring: ``lambda x: model.apply(params, x)[label]``). ``label`` may be
        traced, so a batch with per-example labels is
        ``jax.vmap(lambda x, y: integrated_gradients(lambda z: logits(z)[y], x))``.
      x: the input, any shape.
      baseline: the reference input ``x'`` (same shape); zeros when ``None``.
      steps: number of quadrature nodes, a Python int ``>= 1`` (``>= 2`` for
        ``riemann_trapezoid``).
      method: one of ``METHODS``.
      chunk_size: if set, evaluate at most this many path points at a time (a
        ``lax.scan`` over chunks): bounded memory, the same result up to rounding.

    Returns:
      Attributions with the shape of ``x``.

    Example:
      >>> f = lambda x: x[0] * x[1]
      >>> ig = integrated_gradients(f, jnp.array([2.0, 3.0]), steps=4)
      >>> [round(float(v), 4) for v in ig]
      [3.0, 3.0]
    """
    x, baseline = _as_input(x, baseline)
    check_scalar_output("f", f, _like(x), hint=_SCALAR_HINT)
    direction = x - baseline
    grad_f = jax.grad(f)
    mean_grad = _integrate(
        lambda alpha: grad_f(baseline + alpha * direction), x, method, steps, chunk_size
    )
    return direction * mean_grad


# Path points evaluated per pass by ``batch_integrated_gradients``'s automatic
# chunks: at most POINTS_PER_PASS / batch nodes per example in a pass, so a pass costs
# about the same at any batch size and the cost per image and step stays flat as
# batch x steps grows (2-core x86-64: 200 digits x 50 nodes run fastest in 2 passes).
POINTS_PER_PASS = 8192


class BatchAttribution(NamedTuple):
    """What :func:`batch_integrated_gradients` returns.

    Attributes:
      attributions: ``(batch, *features)``, the integrated gradients of each example.
      deltas: ``(batch,)``, completeness errors ``sum_i IG_i - (F(x) - F(x'))``.
    """

    attributions: jax.Array
    deltas: jax.Array


@functools.partial(
    jax.jit, static_argnames=("apply", "selector", "method", "steps", "chunk")
)
def _batch_ig(apply, selector, params, x, baseline, targets, method, steps, chunk):
    dtype = x.dtype if baseline is None else jnp.result_type(x, baseline)
    x = x.astype(dtype)
    baseline = (
        jnp.zeros_like(x)
        if baseline is None
        else jnp.broadcast_to(baseline, x.shape).astype(dtype)
    )

    def selected(z):
        outputs = apply(params, z)
        if selector is not None:
            return selector(outputs)
        return jnp.take_along_axis(outputs, targets[:, None], axis=1)[:, 0]

    direction = x - baseline
    grad_batch = jax.grad(lambda z: jnp.sum(selected(z)))
    mean_grad = _integrate(
        lambda alpha: grad_batch(baseline + alpha * direction), x, method, steps, chunk
    )
    attributions = direction * mean_grad
    summed = jnp.sum(attributions.reshape(x.shape[0], -1), axis=1)
    return BatchAttribution(attributions, summed - (selected(x) - selected(baseline)))


def batch_integrated_gradients(
    apply: Callable[[object, jax.Array], jax.Array],
    params: object,
    x: ArrayLike,
    targets: ArrayLike | Callable[[jax.Array], jax.Array],
    *,
    baseline: ArrayLike | None = None,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | Literal["auto"] | None = "auto",
) -> BatchAttribution:
    """Integrated gradients of a whole batch, with per-example completeness errors.

    The batch form of :func:`integrated_gradients` for a model ``apply(params,
    x_batch) -> outputs`` (a Flax linen ``module.apply``, or for NNX ``lambda s, x:
    nnx.merge(graphdef, s)(x)``): example ``b`` is attributed for the scalar
    ``F_b(x) = apply(params, x)[b, targets[b]]``, along the straight path from
    ``baseline[b]``. Because examples do not interact (no batch statistics), the
    gradient of ``sum_b F_b`` at a batch of path points is every example's own
    gradient, so one backward pass serves the whole batch:
    ``IG_b = (x_b - x'_b) * sum_k w_k grad F_b(x'_b + alpha_k (x_b - x'_b))``.
    The numbers are those of ``jax.vmap`` over :func:`integrated_gradients`.

    Args:
      apply: the model, ``apply(params, x_batch) -> (batch, outputs)``.
      params: its parameters.
      x: inputs, ``(batch, *features)``.
      targets: class indices ``(batch,)`` (integers), or a selector
        ``targets(outputs) -> (batch,)`` picking each example's scalar.
      baseline: ``(batch, *features)`` per example, or ``features`` shared by all;
        zeros when ``None``.
      steps: quadrature nodes, a Python int ``>= 1``.
      method: one of ``METHODS``.
      chunk_size: path points per example evaluated at once (a ``lax.scan`` over
        chunks of nodes); ``"auto"`` takes the fewest chunks of at most
        ``POINTS_PER_PASS // batch`` nodes (at least 1), as even as they come,
        ``None`` all ``steps`` at once.

    Returns:
      :class:`BatchAttribution`: the attributions and each example's completeness
      error ``delta_b = sum_i IG_b,i - (F_b(x_b) - F_b(x'_b))``.

    Raises:
      ValueError: ``x`` without a batch axis, a baseline or ``targets`` of another
        shape, ``steps`` or ``chunk_size`` below 1, an unknown ``method``.
      TypeError: non-integer ``targets``.

    Example:
      >>> w = jnp.array([[1.0, -1.0], [2.0, 0.5]])
      >>> apply = lambda w, xb: jnp.tanh(xb) @ w
      >>> x = jnp.array([[0.5, 1.0], [1.0, -2.0]])
      >>> ig, deltas = batch_integrated_gradients(apply, w, x, jnp.array([0, 1]))
      >>> ig.shape, bool(jnp.max(jnp.abs(deltas)) < 1e-5)
      ((2, 2), True)
    """
    x = as_real_float("x", x)
    check_at_least("steps", steps, 1)
    check_choice("method", method, METHODS)
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")
    batch = x.shape[0]
    if baseline is not None:
        baseline = as_real_float("baseline", baseline)
        # One per example, or one shared by all (x's trailing axes): broadcast later.
        if baseline.shape != x.shape[max(0, x.ndim - baseline.ndim) :]:
            check_shape("baseline", baseline, x.shape)
    selector = targets if callable(targets) else None
    if selector is None:
        targets = jnp.asarray(targets)
        check_dtype("targets", targets, jnp.integer)
        check_shape("targets", targets, (batch,))
    else:
        targets = None
    if chunk_size == "auto":
        chunk_size = _balanced_chunk(steps, max(1, POINTS_PER_PASS // batch))
    elif chunk_size is not None:
        check_at_least("chunk_size", chunk_size, 1)
    return _batch_ig(
        apply, selector, params, x, baseline, targets, method, steps, chunk_size
    )


def _balanced_chunk(steps: int, largest: int) -> int:
    """The chunk size of the fewest chunks of at most ``largest`` nodes, as even as
    they come: ``steps = 50, largest = 20`` gives 3 chunks of 17, not 20, 20 and 10
    (whose padding to 60 nodes would cost a fifth more work)."""
    num_chunks = -(-steps // largest)
    return -(-steps // num_chunks)


def path_integrated_gradients(
    f: Callable[[jax.Array], ArrayLike],
    path: Callable[[jax.Array], jax.Array],
    *,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | None = None,
) -> jax.Array:
    """Path integrated gradients along a user path ``gamma`` from baseline to input.

    ``PIG_i = int_0^1 df/dx_i(gamma(alpha)) dgamma_i/dalpha dalpha``: the chain rule
    applied to ``f(gamma(alpha))`` gives ``sum_i PIG_i = f(gamma(1)) - f(gamma(0))``.
    ``dgamma/dalpha`` comes from forward mode (``jax.jvp``). The straight path
    ``gamma(alpha) = x' + alpha (x - x')`` gives ``integrated_gradients``.

    Reference: Sundararajan, Taly & Yan, ICML 2017, Sec. 4 (path methods).

    Args:
      f: the model as a closure of one example returning a scalar, as in
        ``integrated_gradients``.
      path: ``gamma(alpha) -> point`` for a scalar ``alpha`` in [0, 1]; ``gamma(0)`` is
        the baseline and ``gamma(1)`` the input.
      steps: as in ``integrated_gradients``.
      method: as in ``integrated_gradients``.
      chunk_size: as in ``integrated_gradients``.

    Returns:
      Attributions with the shape of ``gamma(1)``.

    Example:
      >>> f = lambda x: x[0] * x[1]
      >>> curve = lambda a: jnp.array([2.0 * a, 3.0 * a**2])  # bends away from the line
      >>> pig = path_integrated_gradients(f, curve, steps=4)
      >>> [round(float(v), 4) for v in pig]
      [2.0, 4.0]
    """
    end = jax.eval_shape(path, jax.ShapeDtypeStruct((), jnp.result_type(float)))
    check_dtype("path(alpha)", end, jnp.floating)
    like = jnp.zeros(end.shape, end.dtype)
    check_scalar_output("f", f, _like(like), hint=_SCALAR_HINT)
    grad_f = jax.grad(f)

    def integrand(alpha):
        point, velocity = jax.jvp(path, (alpha,), (jnp.ones_like(alpha),))
        return grad_f(point) * velocity

    return _integrate(integrand, like, method, steps, chunk_size)


def completeness_delta(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    attributions: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    relative: bool = False,
) -> jax.Array:
    """How far attributions are from completeness: ``sum_i a_i - (f(x) - f(x'))``.

    This is Captum's ``compute_convergence_delta`` (same sign). With a stack of
    baselines of shape ``(k, *x.shape)`` (``expected_integrated_gradients``), ``f(x')``
    is the mean of ``f`` over the stack. With ``relative=True`` the result is
    ``|delta| / |f(x) - f(x')|``, the error the IG paper asks to keep under 5% (it is
    infinite or NaN when ``f(x) == f(x')``).

    Example:
      >>> f = lambda x: x[0] * x[1]
      >>> x = jnp.array([2.0, 3.0])
      >>> ig = integrated_gradients(f, x, steps=4, method="riemann_left")
      >>> round(float(completeness_delta(f, x, ig)), 4)
      -1.5
    """
    x = as_real_float("x", x)
    check_shape("attributions", attributions, x.shape)
    if baseline is not None and jnp.ndim(baseline) == x.ndim + 1:
        baseline = as_real_float("baseline", baseline)
        check_shape("baseline", baseline, (None, *x.shape))
        f_baseline = jnp.mean(jax.vmap(f)(baseline.astype(x.dtype)))
    else:
        x, baseline = _as_input(x, baseline)
        f_baseline = f(baseline)
    change = f(x) - f_baseline
    delta = jnp.sum(attributions) - change
    return jnp.abs(delta) / jnp.abs(change) if relative else delta


class CompletenessErrors(NamedTuple):
    """What ``completeness_errors`` returns: one entry per step count."""

    rel_error: jax.Array
    rel_error_captum: jax.Array


def completeness_errors(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    steps: Sequence[int],
    baseline: ArrayLike | None = None,
    method: Method = "gausslegendre",
) -> CompletenessErrors:
    """Relative completeness error of integrated gradients for several step counts.

    Entry ``j`` is ``|sum_i IG_i - (f(x) - f(x'))| / |f(x) - f(x')|`` with
    ``steps[j]`` nodes: how the quadrature converges, in one program (jit it, vmap it
    over a batch with ``jax.vmap``). ``rel_error_captum`` is the same error with
    Captum's weights, which are ours times ``(n - 1) / n`` for ``riemann_trapezoid``
    (see ``quadrature_rule``) and ours otherwise, so its attribution sum is ours
    scaled by that factor: it falls only as ``1/n``.

    Args:
      f: the model as a closure of one example returning a scalar, as in
        ``integrated_gradients``.
      x: the input, any shape.
      steps: the step counts, Python ints ``>= 1`` (``>= 2`` for
        ``riemann_trapezoid``).
      baseline: as in ``integrated_gradients``.
      method: as in ``integrated_gradients``.

    Returns:
      ``CompletenessErrors(rel_error, rel_error_captum)``, each of shape
      ``(len(steps),)`` (infinite or NaN where ``f(x) == f(x')``).

    Example:
      >>> f = lambda x: x[0] * x[1]  # right Riemann overshoots by 1 / steps
      >>> errors = completeness_errors(
      ...     f, jnp.array([2.0, 3.0]), steps=(1, 4), method="riemann_right")
      >>> [round(float(e), 4) for e in errors.rel_error]
      [1.0, 0.25]
    """
    steps = tuple(steps)
    if not steps:
        raise ValueError("steps must name at least one step count, got ()")
    x, baseline = _as_input(x, baseline)
    sums = jnp.stack(
        [
            jnp.sum(
                integrated_gradients(f, x, baseline=baseline, steps=n, method=method)
            )
            for n in steps
        ]
    )
    change = f(x) - f(baseline)
    n = np.asarray(steps, np.float64)
    scale = (n - 1) / n if method == "riemann_trapezoid" else np.ones_like(n)
    return CompletenessErrors(
        jnp.abs(sums - change) / jnp.abs(change),
        jnp.abs(sums * jnp.asarray(scale, sums.dtype) - change) / jnp.abs(change),
    )


class ToleranceResult(NamedTuple):
    """What ``integrated_gradients_to_tolerance`` returns."""

    attributions: jax.Array
    steps: int
    rel_error: float


def integrated_gradients_to_tolerance(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    rtol: float = 0.05,
    method: Method = "gausslegendre",
    initial_steps: int = 4,
    max_steps: int = 1024,
    chunk_size: int | None = None,
) -> ToleranceResult:
    """Double ``steps`` until the relative completeness error is at most ``rtol``.

    The IG paper (Sec. 5) advises checking that the attributions add up to within 5% of
    ``f(x) - f(x')`` and raising the number of steps if not; this automates it. It
    returns the first attributions with ``|delta| <= rtol |f(x) - f(x')|``, or those at
    ``max_steps`` (check ``rel_error``) when the tolerance is not reached. It is a
    Python loop (the number of steps fixes shapes), so call it outside ``jit``; each
    step count is one compiled program.

    Example:
      >>> f = lambda x: x[0] * x[1]  # right Riemann overshoots by 1 / steps
      >>> res = integrated_gradients_to_tolerance(
      ...     f, jnp.array([2.0, 3.0]), rtol=0.05, method="riemann_right")
      >>> res.steps, round(res.rel_error, 4)
      (32, 0.0312)
    """
    check_positive("rtol", rtol)
    check_choice("method", method, METHODS)
    check_at_least("initial_steps", initial_steps, 1)
    check_at_least("max_steps", max_steps, initial_steps)
    x, baseline = _as_input(x, baseline)

    @functools.partial(jax.jit, static_argnames="steps")
    def attempt(x: jax.Array, baseline: jax.Array, steps: int):
        attributions = integrated_gradients(
            f, x, baseline=baseline, steps=steps, method=method, chunk_size=chunk_size
        )
        delta = completeness_delta(f, x, attributions, baseline=baseline, relative=True)
        return attributions, delta

    steps = max(initial_steps, 2) if method == "riemann_trapezoid" else initial_steps
    while True:
        attributions, delta = attempt(x, baseline, steps)
        error = float(delta)
        if error <= rtol or steps >= max_steps:
            return ToleranceResult(attributions, steps, error)
        steps = min(2 * steps, max_steps)


def blurred_baseline(
    x: ArrayLike, *, sigma: float = 1.0, axes: tuple[int, ...] | None = None
) -> jax.Array:
    """A Gaussian blur of ``x``: the baseline that keeps intensity but removes detail.

    Separable blur with weights ``exp(-(i - j)^2 / (2 sigma^2))`` along each axis in
    ``axes`` (all axes when ``None``; pass the spatial axes of ``(H, W, C)`` images),
    renormalised at the borders so a constant image stays constant.

    Reference: Sturmfels, Lundberg & Lee, "Visualizing the Impact of Feature
    Attribution Baselines", Distill 2020.

    Example:
      >>> b = blurred_baseline(jnp.array([0.0, 0.0, 3.0, 0.0, 0.0]), sigma=1.0)
      >>> [round(float(v), 4) for v in b]
      [0.2316, 0.7712, 1.2079, 0.7712, 0.2316]
      >>> round(float(blurred_baseline(jnp.full((4, 4), 2.0)).max()), 4)
      2.0
    """
    check_positive("sigma", sigma)
    x = as_real_float("x", x)
    axes = tuple(range(x.ndim)) if axes is None else tuple(axes)
    if any(not -x.ndim <= axis < x.ndim for axis in axes):
        raise ValueError(
            f"axes {axes} out of range for an input of shape {x.shape}: allowed are "
            f"-{x.ndim}..{x.ndim - 1}"
        )
    for axis in axes:
        n = x.shape[axis]
        offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
        kernel = np.exp(-(offsets**2) / (2.0 * sigma**2))
        kernel = jnp.asarray(kernel / kernel.sum(axis=1, keepdims=True), x.dtype)
        x = jnp.moveaxis(jnp.tensordot(kernel, x, axes=([1], [axis])), 0, axis)
    return x


def uniform_baselines(
    key: jax.Array,
    x: ArrayLike,
    *,
    num_samples: int,
    minval: float = 0.0,
    maxval: float = 1.0,
) -> jax.Array:
    """Uniform-noise baselines on [minval, maxval), shape ``(num_samples, *x.shape)``.

    Feed them to ``expected_integrated_gradients``.

    Example:
      >>> b = uniform_baselines(jax.random.key(0), jnp.zeros(3), num_samples=5)
      >>> b.shape, bool((b >= 0).all() & (b < 1).all())
      ((5, 3), True)
    """
    check_at_least("num_samples", num_samples, 1)
    if not minval < maxval:
        raise ValueError(f"maxval must be > minval = {minval}, got {maxval}")
    x = as_real_float("x", x)
    return jax.random.uniform(
        key, (num_samples, *x.shape), x.dtype, minval=minval, maxval=maxval
    )


def expected_integrated_gradients(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    baselines: ArrayLike,
    *,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | None = None,
) -> jax.Array:
    """Integrated gradients averaged over a stack of baselines ``(k, *x.shape)``.

    ``EG(x) = mean_j IG(x; x'_j)``: expected gradients (Erion et al., "Improving
    performance of deep learning models with axiomatic attribution priors and expected
    gradients", Nature Machine Intelligence 2021) with ``alpha`` integrated by
    quadrature rather than sampled. By linearity ``sum_i EG_i = f(x) - mean_j
    f(x'_j)``, which ``completeness_delta(f, x, baselines, eg)`` checks.

    Example:
      >>> f = lambda x: x[0] * x[1]
      >>> bs = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> eg = expected_integrated_gradients(f, jnp.array([2.0, 3.0]), bs, steps=4)
      >>> [round(float(v), 4) for v in eg]
      [2.5, 3.0]
    """
    x = as_real_float("x", x)
    baselines = as_real_float("baselines", baselines).astype(x.dtype)
    check_shape("baselines", baselines, (None, *x.shape))

    def one(baseline):
        return integrated_gradients(
            f, x, baseline=baseline, steps=steps, method=method, chunk_size=chunk_size
        )

    return jnp.mean(jax.vmap(one)(baselines), axis=0)


def gradient_x_input(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
) -> jax.Array:
    """``(x - x') * grad f(x)``: the one-node (right Riemann) special case of IG.

    Reference: Shrikumar et al., "Not Just a Black Box", 2016 (arXiv:1605.01713).

    Example:
      >>> [round(float(v), 4) for v in gradient_x_input(
      ...     lambda x: x[0] * x[1], jnp.array([2.0, 3.0]))]
      [6.0, 6.0]
    """
    x, baseline = _as_input(x, baseline)
    check_scalar_output("f", f, _like(x), hint=_SCALAR_HINT)
    return (x - baseline) * jax.grad(f)(x)


def deletion_curve(
    f: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    attributions: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    num_points: int | None = None,
) -> jax.Array:
    """Scores ``f`` as features are replaced by the baseline, highest attribution first.

    Entry ``j`` of the result is ``f`` after the ``round(j n / num_points)`` features
    with the largest attributions (of ``n``; ties by position) are set to their
    baseline values, ``j = 0..num_points`` (``num_points = n`` by default: one feature
    at a time). A faithful attribution makes the score fall fast: a small area under the
    curve (``jnp.trapezoid(curve, dx=1 / num_points)``). Random attributions give the
    reference order.

    Reference: Petsiuk, Das & Saenko, "RISE", BMVC 2018 (the deletion metric).

    Example:
      >>> f = lambda x: jnp.sum(jnp.array([3.0, 1.0, 2.0]) * x)
      >>> curve = deletion_curve(f, jnp.ones(3), jnp.array([3.0, 1.0, 2.0]))
      >>> [round(float(v), 4) for v in curve]
      [6.0, 3.0, 1.0, 0.0]
    """
    x, baseline = _as_input(x, baseline)
    check_shape("attributions", attributions, x.shape)
    check_scalar_output("f", f, _like(x), hint=_SCALAR_HINT)
    n = x.size
    num_points = n if num_points is None else num_points
    check_at_least("num_points", num_points, 1)
    if num_points > n:
        raise ValueError(
            f"num_points must be <= {n} (the input's size), got {num_points}"
        )
    # rank[i] = position of feature i in the deletion order (0 = deleted first).
    order = jnp.argsort(-attributions.ravel(), stable=True)
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    counts = jnp.asarray(
        np.round(np.arange(num_points + 1) * n / num_points), jnp.int32
    )
    masks = rank[None, :] < counts[:, None]
    points = jnp.where(masks, baseline.ravel()[None, :], x.ravel()[None, :])
    return jax.vmap(lambda p: f(p.reshape(x.shape)))(points)


def deletion_area(curve: ArrayLike) -> jax.Array:
    """Area under deletion curves over the deleted fraction in [0, 1] (trapezoid rule).

    ``curve`` is ``(..., num_points + 1)``, as ``deletion_curve`` returns (a batch of
    them too): entry ``j`` at fraction ``j / num_points``. Smaller is more faithful.

    Reference: Petsiuk, Das & Saenko, "RISE", BMVC 2018 (the deletion metric).

    Example:
      >>> round(float(deletion_area(jnp.array([6.0, 3.0, 1.0, 0.0]))), 4)
      2.3333
    """
    curve = as_real_float("curve", curve)
    if curve.ndim == 0 or curve.shape[-1] < 2:
        raise ValueError(
            f"curve must have shape (..., n) with n >= 2 points, got {curve.shape}"
        )
    return jnp.trapezoid(curve, dx=1.0 / (curve.shape[-1] - 1), axis=-1)


_LAYER_HINT = (
    "; split the model as head(body(x)) with a scalar head, e.g. head = lambda y: "
    "logits_from_hidden(y)[label]"
)


def _layer_like(body: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Zeros shaped like the layer ``body(x)`` (found by ``jax.eval_shape``)."""
    layer = jax.eval_shape(body, _like(x))
    check_dtype("body(x)", layer, jnp.floating)
    return jnp.zeros(layer.shape, layer.dtype)


def layer_conductance(
    body: Callable[[jax.Array], jax.Array],
    head: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | None = None,
) -> jax.Array:
    """Conductance of every unit of the layer ``y = body(x)`` for ``F = head(body(x))``.

    Along the straight path ``x(alpha) = x' + alpha (x - x')`` the chain rule splits
    ``dF/dalpha`` over the layer's units,
    ``dF/dalpha = sum_j dF/dy_j(y(alpha)) * dy_j/dalpha`` with
    ``dy/dalpha = J_body(x(alpha)) (x - x')``, so integrating unit by unit,

        Cond_j = int_0^1 dF/dy_j(y(alpha)) dy_j/dalpha dalpha,
        sum_j Cond_j = F(x) - F(x')              (completeness through the layer).

    Each node of ``quadrature_rule(method, steps)`` costs one forward-mode pass through
    ``body`` (``jax.jvp``: ``y`` and ``dy/dalpha`` together) and one gradient of
    ``head``; the nodes run in one vectorised pass (or in chunks of ``chunk_size``).
    ``Cond_j = sum_i Cond_ij`` also sums Dhamdhere et al.'s per-input conductances, and
    ``sum_j Cond_j = sum_i IG_i`` for the same rule.

    Captum's ``LayerConductance`` replaces ``dy/dalpha dalpha`` by the difference of
    the layer between consecutive nodes (a left Riemann-Stieltjes sum over
    ``steps + 1`` nodes, the rule's weights unused); both converge to the integral,
    Captum's at first order in the node spacing (``benchmarks/conductance_vs_captum.py``
    compares them).

    Reference: K. Dhamdhere, M. Sundararajan and Q. Yan, "How Important Is a Neuron?",
    ICLR 2019 (arXiv:1805.12233), eq. (3).

    Args:
      body: the input side, one example ``x -> y`` (the layer's activations, any
        shape, floating).
      head: the output side, ``y -> scalar`` (select the label inside it).
      x: the input, any shape.
      baseline: the reference input ``x'`` (same shape); zeros when ``None``.
      steps: number of quadrature nodes, as in ``integrated_gradients``.
      method: one of ``METHODS``.
      chunk_size: as in ``integrated_gradients``.

    Returns:
      Conductances with the shape of ``body(x)``.

    Raises:
      ValueError: ``head`` not scalar-valued, a baseline of another shape, ``steps``
        or ``chunk_size`` out of range, an unknown ``method``.
      TypeError: a non-floating layer.

    Example:
      >>> body = lambda x: jnp.stack([x[0] * x[1], x[0] + x[1]])
      >>> head = lambda y: y[0] + 2.0 * y[1]
      >>> x = jnp.array([2.0, 3.0])
      >>> cond = layer_conductance(body, head, x, steps=4)
      >>> [round(float(c), 4) for c in cond], round(float(cond.sum()), 4)
      ([6.0, 10.0], 16.0)
    """
    x, baseline = _as_input(x, baseline)
    like = _layer_like(body, x)
    check_scalar_output("head", head, _like(like), hint=_LAYER_HINT)
    direction = x - baseline
    grad_head = jax.grad(head)

    def integrand(alpha):
        layer, velocity = jax.jvp(body, (baseline + alpha * direction,), (direction,))
        return grad_head(layer) * velocity

    return _integrate(integrand, like, method, steps, chunk_size)


def layer_integrated_gradients(
    body: Callable[[jax.Array], jax.Array],
    head: Callable[[jax.Array], ArrayLike],
    x: ArrayLike,
    *,
    baseline: ArrayLike | None = None,
    steps: int = 50,
    method: Method = "gausslegendre",
    chunk_size: int | None = None,
) -> jax.Array:
    """Integrated gradients of ``head`` in the space of the layer ``y = body(x)``.

    With ``y = body(x)`` and ``y' = body(x')``,

        LIG_j = (y_j - y'_j) sum_k w_k dhead/dy_j(y' + alpha_k (y - y')),

    and by completeness ``sum_j LIG_j = F(x) - F(x')`` up to the quadrature error.
    The path is the straight line between the two activations (Captum's
    ``LayerIntegratedGradients`` with its default ``attribute_to_layer_input=False``),
    not the image of the input path as in :func:`layer_conductance`; the two agree
    when ``body`` is linear.

    Args:
      body: the input side, one example ``x -> y``.
      head: the output side, ``y -> scalar``.
      x: the input, any shape.
      baseline: the reference input ``x'``; zeros when ``None``.
      steps: as in ``integrated_gradients``.
      method: as in ``integrated_gradients``.
      chunk_size: as in ``integrated_gradients``.

    Returns:
      Attributions with the shape of ``body(x)``.

    Example:
      >>> body = lambda x: 2.0 * x
      >>> head = lambda y: y[0] * y[1]
      >>> lig = layer_integrated_gradients(body, head, jnp.array([1.0, 2.0]), steps=4)
      >>> [round(float(v), 4) for v in lig]
      [4.0, 4.0]
    """
    x, baseline = _as_input(x, baseline)
    like = _layer_like(body, x)
    check_scalar_output("head", head, _like(like), hint=_LAYER_HINT)
    return integrated_gradients(
        head,
        body(x),
        baseline=body(baseline),
        steps=steps,
        method=method,
        chunk_size=chunk_size,
    )

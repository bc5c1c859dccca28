"""Jacobian regularization: penalise R(x) = ||df/dx||_F^2 by nested differentiation.

The penalty is itself a derivative, so its gradient with respect to the parameters is a
derivative of a derivative: reverse-over-reverse when R is built from VJPs,
reverse-over-forward when it is built from JVPs. Three ways to compute R for one input
x, with J = df/dx of shape (C, D) (C outputs, D inputs, after flattening):

- ``"exact"``: all of J, by forward mode (D JVPs, one per basis vector of input
  space) or reverse mode (C VJPs, one per basis vector of output space), whichever
  a cost model counts cheaper (:func:`exact_mode`); R = sum_ij J_ij^2.
- ``"projection"`` (Hoffman, Roberts & Yaida 2019): v uniform on the unit sphere in
  output space, so E[v v^T] = I / C and E[C ||v^T J||^2] = ||J||_F^2. One VJP per
  projection.
- ``"forward_projection"``: u ~ N(0, I) in input space, E[u u^T] = I, so
  E[||J u||^2] = ||J||_F^2 (Hutchinson's trace estimator on J^T J). One JVP per probe.

The estimators are unbiased; averaging ``num_projections`` independent probes divides
their variance by ``num_projections``.

The probes (basis vectors or random directions) are vmapped, ``chunk`` of them per
pass: with ``chunk="auto"`` (the default) a ``lax.scan`` over chunks takes them when
they are many, each chunk rematerialised in the backward pass, so that the
intermediates a pass holds stay about ``VALUES_PER_PASS`` values and the cost per
probe does not grow with their number (``chunk=None``: all at once). The result is
the same up to float rounding.

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
import jax.extend.core
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
    "exact_mode",
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
ADMode = Literal["auto", "forward", "reverse"]
AD_MODES = ("auto", "forward", "reverse")
Chunk = int | Literal["auto"] | None
# chunk="auto": the probes of one pass create about this many intermediate values
# (4 MiB in float32). On a 2-core x86-64 CPU with 2 MiB of L2 cache per core, the
# 64-128-128-C tanh MLP's training step with the exact penalty (batch 64) was
# fastest with chunks of 8 to 32 probes here; unchunked, 200 VJPs took 2x as long.
VALUES_PER_PASS = 2**20
# ad_mode="auto" of the exact method: what a forward-mode multiply-add costs in
# reverse-mode ones, measured (see exact_mode).
FORWARD_MODE_COST = 1.14
# The exact method linearises groups of examples when the work shared by a group's
# probes saves more than this fraction of the rest. Measured on the 64-128-128-C MLP
# at batch 64 (shared work saved in brackets): reverse mode, groups 3-6% slower at
# C = 10 and 32 (5%, 16%), even at C = 64 (32%), 22% faster at C = 100 (50%);
# forward mode, groups 7% faster at C = 100 (27%) and 18% faster at C = 32 (38%).
GROUPING_GAIN = 0.2
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


class _Work(NamedTuple):
    """Work of one probe's pass through a linearised network: multiply-adds (matrix
    products and convolutions) plus values created (every other operation), split
    into ``shared`` (operations on the probe and constants alone, such as a basis
    vector times a weight matrix) and ``per_example`` (operations that also involve
    the examples, for the batch the pass was traced with)."""

    shared: int
    per_example: int
    shared_values: int
    per_example_values: int


_EXAMPLE, _PROBE = 1, 2  # what a value depends on, as bit flags


def _multiply_adds(eqn: jax.extend.core.JaxprEqn) -> int:
    out = math.prod(eqn.outvars[0].aval.shape)
    if eqn.primitive.name == "dot_general":
        (contracting, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return out * math.prod(lhs[d] for d in contracting)
    if eqn.primitive.name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        return out * math.prod(rhs) // out_features
    return 0


def _tally(jaxpr: jax.extend.core.Jaxpr, flags: list[int], work: list[int]) -> list:
    """Add the work of ``jaxpr``'s equations to ``work`` ([shared multiply-adds,
    per-example ones, shared values, per-example values]), by what each depends on
    given its inputs' ``flags``; returns the outputs' flags. Calls are followed into;
    other inner jaxprs (loops, branches) are counted as one operation."""
    env = dict(zip(jaxpr.invars, flags, strict=True))

    def flag(v):
        return env.get(v, 0) if isinstance(v, jax.extend.core.Var) else 0

    for eqn in jaxpr.eqns:
        in_flags = [flag(v) for v in eqn.invars]
        inner = list(jax.extend.core.jaxprs_in_params(eqn.params))
        if len(inner) == 1 and len(inner[0].invars) == len(eqn.invars):
            out_flags = _tally(inner[0], in_flags, work)
        else:
            union = 0
            for f in in_flags:
                union |= f
            out_flags = [union] * len(eqn.outvars)
            if union & _PROBE:
                example = bool(union & _EXAMPLE)
                work[example] += _multiply_adds(eqn)
                work[2 + example] += sum(math.prod(v.aval.shape) for v in eqn.outvars)
        env.update(zip(eqn.outvars, out_flags, strict=True))
    return [flag(v) for v in jaxpr.outvars]


def _probe_work(
    f: Callable[[jax.Array], jax.Array],
    z: jax.ShapeDtypeStruct,
    out: jax.ShapeDtypeStruct,
    ad_mode: Literal["forward", "reverse"],
) -> _Work:
    """The work of one JVP (forward) or VJP (reverse) of ``f`` at inputs shaped ``z``,
    read from the jaxpr of the pass (the forward pass, which does not involve the
    probe, is left out)."""
    if ad_mode == "forward":
        probe = z

        def one_pass(z, t):
            return jax.jvp(f, (z,), (t,))[1]
    else:
        probe = out

        def one_pass(z, t):
            return jax.vjp(f, z)[1](t)

    jaxpr = jax.make_jaxpr(one_pass)(z, probe).jaxpr
    work = [0, 0, 0, 0]
    _tally(jaxpr, [_EXAMPLE, _PROBE], work)
    return _Work(*work)


def _probes_per_pass(chunk: Chunk, values: int, num: int) -> int | None:
    """The probes of one pass (``None``: all ``num`` at once) for ``chunk``.

    ``"auto"``: as many as keep ``VALUES_PER_PASS`` intermediate values, a probe's
    pass creating ``values``; all at once when they fit in two such passes (a loop of
    two costs more than it saves).
    """
    if chunk != "auto":
        return chunk
    per_pass = max(1, VALUES_PER_PASS // max(values, 1))
    return None if num <= 2 * per_pass else per_pass


def _probe_sum(
    linear: Callable[[jax.Array], jax.Array],
    descriptors: jax.Array,
    probes: Callable[[jax.Array], jax.Array],
    per_pass: int | None,
    fill: int | float,
) -> jax.Array:
    """(B,): every example's squared norm of ``linear(probe)``, summed over probes.

    ``descriptors`` (P, ...) describe P probes and ``probes(descriptors[i:j])`` builds
    them, shape (j - i, B, ...). With ``per_pass=None`` one ``vmap`` takes all P;
    otherwise a ``lax.scan`` takes as even chunks of at most ``per_pass``, the last
    padded with ``fill`` (which describes a zero probe, adding nothing). Each chunk is
    rematerialised (``jax.checkpoint``) in the backward pass, so what a derivative of
    the sum holds is one chunk's intermediates, not all P probes'.
    """

    def chunk_sum(chunk_descriptors):
        return _per_example_sq(jax.vmap(linear)(probes(chunk_descriptors)))

    num = descriptors.shape[0]
    if per_pass is None or per_pass >= num:
        return chunk_sum(descriptors)
    count = -(-num // per_pass)
    size = -(-num // count)
    padding = jnp.full((count * size - num, *descriptors.shape[1:]), fill)
    chunks = jnp.concatenate([descriptors, padding.astype(descriptors.dtype)])
    chunks = chunks.reshape(count, size, *descriptors.shape[1:])
    chunk_sum = jax.checkpoint(chunk_sum)

    def add_chunk(total, chunk_descriptors):
        return total + chunk_sum(chunk_descriptors), None

    total, _ = jax.lax.scan(add_chunk, chunk_sum(chunks[0]), chunks[1:])
    return total


def _group_size(batch: int) -> int:
    """The smallest divisor of ``batch`` above 1 (``batch`` itself when prime or 1)."""
    return next((g for g in range(2, batch) if batch % g == 0), batch)


class _ExactPlan(NamedTuple):
    """How the exact method runs: its mode, the probes of one pass (``None``: all),
    and the examples linearised together (the whole batch, or groups of them)."""

    mode: Literal["forward", "reverse"]
    per_pass: int | None
    group: int


def _exact_plan(
    f: Callable[[jax.Array], jax.Array],
    x: jax.ShapeDtypeStruct,
    out: jax.ShapeDtypeStruct,
    ad_mode: ADMode,
    chunk: Chunk,
) -> _ExactPlan:
    """The mode, chunks and groups of the exact method (see :func:`exact_mode`).

    Each mode's work per probe is counted for the smallest group g of examples (see
    :func:`_exact`): linearised in B / g groups, the shared work runs once and the
    rest B / g times; linearised as one batch, all of it runs B / g times. Groups are
    used when the shared work they save is more than ``GROUPING_GAIN`` of the rest.
    """
    batch = x.shape[0]
    group = _group_size(batch)
    copies = batch // group
    z = jax.ShapeDtypeStruct((group, *x.shape[1:]), x.dtype)
    y = jax.ShapeDtypeStruct((group, *out.shape[1:]), out.dtype)
    probes = {"forward": math.prod(x.shape[1:]), "reverse": math.prod(out.shape[1:])}
    modes = ("forward", "reverse") if ad_mode == "auto" else (ad_mode,)
    plans, costs = {}, {}
    for mode in modes:
        if copies == 1 and chunk != "auto" and len(modes) == 1:
            return _ExactPlan(mode, chunk, batch)  # nothing to count
        try:
            work = _probe_work(f, z, y, mode)
        # A mode f does not support (a while loop has no VJP) is never chosen; when
        # neither traces, or the one asked for does not, the pass itself says why.
        except (TypeError, ValueError, NotImplementedError):
            if len(modes) == 1:
                return _ExactPlan(mode, None if chunk == "auto" else chunk, batch)
            continue
        grouped = (copies - 1) * work.shared > GROUPING_GAIN * copies * work.per_example
        if grouped:
            cost = work.shared + copies * work.per_example
            values = work.shared_values + copies * work.per_example_values
        else:
            cost = copies * (work.shared + work.per_example)
            values = copies * (work.shared_values + work.per_example_values)
        per_pass = _probes_per_pass(chunk, values, probes[mode])
        plans[mode] = _ExactPlan(mode, per_pass, group if grouped else batch)
        costs[mode] = probes[mode] * (cost + values)
    if not plans:
        return _ExactPlan("reverse", None, batch)
    if "forward" in costs:
        costs["forward"] *= FORWARD_MODE_COST
    return plans[min(costs, key=costs.get)]


def _exact(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    out: jax.ShapeDtypeStruct,
    plan: _ExactPlan,
) -> tuple[jax.Array, jax.Array]:
    """``(f(x), R)`` exactly: J e_j for every input direction j (forward mode) or
    e_i^T J for every output direction i (reverse mode), e the basis vectors.

    The basis vectors are the same for every example. Linearised per group of g
    examples under a ``vmap`` over the B / g groups, a probe stays unbatched across
    groups, and the operations on the probe and constants alone (the first layer a
    probe meets: f's first in forward mode, its last in reverse mode) run once per
    probe instead of once per probe and group. g is the smallest divisor of B above
    1, not 1: XLA's CPU (YNNPACK) fusions are slow on the size-1 axes a batch of one
    leaves. With g = B this is one batched linearisation.
    """
    batch, in_shape, out_shape = x.shape[0], x.shape[1:], out.shape[1:]
    group = plan.group
    if plan.mode == "forward":
        shape, dtype = in_shape, x.dtype
    else:
        shape, dtype = out_shape, out.dtype
    size = math.prod(shape)

    def basis(indices):  # (k,) -> (k, group, *shape); index -1 is a zero probe
        e = jax.nn.one_hot(indices, size, dtype=dtype).reshape(-1, 1, *shape)
        return jnp.broadcast_to(e, (e.shape[0], group, *shape))

    def per_group(z):
        if plan.mode == "forward":
            y, linear = jax.linearize(f, z)
        else:
            y, vjp_fn = jax.vjp(f, z)

            def linear(v):
                return vjp_fn(v)[0]

        indices = jnp.arange(size, dtype=jnp.int32)
        return y, _probe_sum(linear, indices, basis, plan.per_pass, -1)

    if group == batch:
        return per_group(x)
    y, r = jax.vmap(per_group)(x.reshape(batch // group, group, *in_shape))
    return y.reshape(out.shape), r.reshape(batch)


def _batched_frobenius_sq(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    out: jax.ShapeDtypeStruct,
    method: Method,
    key: jax.Array | None,
    num_projections: int,
    chunk: Chunk,
    ad_mode: ADMode,
) -> tuple[jax.Array, jax.Array]:
    """``(f(x), R)`` with R_b for every example b of x (B, ...), for an f whose
    examples are independent.

    Because example b's outputs depend only on x_b, one JVP (VJP) of the batched f with
    a tangent (cotangent) per example yields every example's J_b u_b (v_b^T J_b) at
    once: each probe costs one batched pass, not one pass per example.
    """
    if method == "exact":
        return _exact(f, x, out, _exact_plan(f, x, out, ad_mode, chunk))
    per_pass = None if chunk == "auto" else chunk
    if chunk == "auto" and num_projections > 2:
        mode = "reverse" if method == "projection" else "forward"
        work = _probe_work(f, jax.ShapeDtypeStruct(x.shape, x.dtype), out, mode)
        values = work.shared_values + work.per_example_values
        per_pass = _probes_per_pass(chunk, values, num_projections)
    key = _probe_key(key)
    if method == "projection":
        y, vjp_fn = jax.vjp(f, x)

        def linear(v):
            return vjp_fn(v)[0]

        v = jax.random.normal(key, (num_projections, *out.shape), dtype=out.dtype)
        axes = tuple(range(2, v.ndim))
        v = v / jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))
        scale = math.prod(out.shape[1:])  # C * ||v^T J||^2 with E[v v^T] = I / C
    else:
        y, linear = jax.linearize(f, x)
        # ||J u||^2 with E[u u^T] = I.
        v = jax.random.normal(key, (num_projections, *x.shape), dtype=x.dtype)
        scale = 1
    sq = _probe_sum(linear, v, _identity, per_pass, 0)
    return y, scale * sq / num_projections  # averaged over the probes


def _probe_key(key: jax.Array) -> jax.Array:
    """The key the estimators draw their probes with: a threefry2x32 key's bits as a
    Philox-4x32 key (``jax.random``'s ``"philox4x32"``, the same key size), any other
    key as it is.

    Both are counter-based generators of the same quality and give the same draws on
    every backend; on the CPU, XLA runs threefry as a loop whose steps cost more than
    the draws themselves (about 10% of a one-probe projection training step), Philox
    as one kernel.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(key) != "threefry2x32":
            return key
        data = jax.random.key_data(key)
    elif key.shape == (2,) and key.dtype == jnp.uint32:  # jax.random.PRNGKey
        data = key
    else:
        return key
    return jax.random.wrap_key_data(data, impl="philox4x32")


def _identity(a: jax.Array) -> jax.Array:
    return a


def _check_probe_options(
    method: str, chunk: int | Literal["auto"] | None, ad_mode: str
) -> None:
    check_choice("ad_mode", ad_mode, AD_MODES)
    if ad_mode != "auto" and method != "exact":
        raise ValueError(
            f"ad_mode applies to method='exact' only, got ad_mode={ad_mode!r} with "
            f"method={method!r} (projection is reverse mode, forward_projection "
            "forward mode)"
        )
    if not (chunk is None or isinstance(chunk, str) and chunk == "auto"):
        if isinstance(chunk, str):
            raise ValueError(
                f"chunk must be 'auto', None or an integer >= 1, got {chunk!r}"
            )
        check_at_least("chunk", chunk, 1)


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
    chunk: Chunk = "auto",
    ad_mode: ADMode = "auto",
) -> jax.Array:
    """Squared Frobenius norm of the Jacobian of ``f`` at a single input ``x``.

    R(x) = ||df/dx (x)||_F^2 = sum_ij (d f_i / d x_j)^2, with ``f(x)`` and ``x`` of any
    shape (flattened to C outputs and D inputs).

    Args:
      f: function of one array; it may close over parameters, and R is differentiable
        with respect to them (``jax.grad`` of a function that calls this one).
      x: one input (no batch axis: ``jax.vmap`` this function over a batch).
      method: ``"exact"`` (D JVPs or C VJPs of basis vectors, see ``ad_mode``),
        ``"projection"`` (Hoffman et al. 2019: v uniform on the unit sphere of
        output space, estimate C ||v^T J||^2, via VJPs) or ``"forward_projection"``
        (u ~ N(0, I) in input space, estimate ||J u||^2, via JVPs).
      key: PRNG key for the estimators (required by them, ignored by ``"exact"``).
        A threefry key's bits draw the probes as a Philox-4x32 key (same draws on
        every backend; on the CPU threefry runs as a slow loop).
      num_projections: probes averaged by the estimators (variance ~ 1 / this).
      chunk: probes evaluated per pass: ``"auto"`` (about ``VALUES_PER_PASS``
        intermediate values per pass, all at once when they are few), ``None`` (all
        at once) or a number (at most that many: the passes are as even as
        possible). Same result up to float rounding; bounded memory.
      ad_mode: the exact method's mode: ``"auto"`` (:func:`exact_mode`'s cost
        model), ``"forward"`` (D JVPs: needed where f has no VJP, such as a
        ``lax.while_loop``) or ``"reverse"`` (C VJPs: needed where f has no JVP,
        such as a ``custom_vjp``). Only ``"auto"`` with the estimators.

    Returns:
      A scalar: the exact value or an unbiased estimate of it.

    Raises:
      ValueError: an unknown ``method`` or ``ad_mode``, ``ad_mode`` other than
        ``"auto"`` with an estimator, no ``key`` for an estimator,
        ``num_projections`` or ``chunk`` below 1.
      TypeError: ``f`` returns several arrays or a non-float array.

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
    _check_probe_options(method, chunk, ad_mode)
    x = as_real_float("x", x)

    out = _output_shape(f, x)

    def batched(z):  # a batch of one, for the shared implementation
        return f(z[0])[None]

    batched_out = jax.ShapeDtypeStruct((1, *out.shape), out.dtype)
    _, r = _batched_frobenius_sq(
        batched, x[None], batched_out, method, key, num_projections, chunk, ad_mode
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
    chunk: Chunk = "auto",
    ad_mode: ADMode = "auto",
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Batch mean of ``R(x_b) = ||d apply(params, x)_b / d x_b||_F^2``.

    ``apply(params, x_batch)`` maps a batch ``x`` (B, ...) to outputs (B, ...): a Flax
    linen ``module.apply``, or for Flax NNX ``graphdef, state = nnx.split(model)`` with
    ``lambda s, x: nnx.merge(graphdef, s)(x)``. It must treat examples independently
    (no batch statistics, as in batch norm's training mode). ``method``, ``key``,
    ``num_projections``, ``chunk`` and ``ad_mode`` are as in
    :func:`jacobian_frobenius_sq` (default ``"exact"``). Then one batched JVP or VJP
    per probe gives every example's projection at once, as in Hoffman et al.'s
    implementation: the cost is that of ``num_projections`` (or, for ``"exact"``, D
    or C) extra forward or backward passes over the batch. Each example gets its own
    random probes. The exact method's basis vectors are shared: where that saves
    enough work it linearises ``apply`` on groups of examples under a ``vmap``, so
    that the layer a basis vector meets first runs once per probe, not once per
    probe and example (see :func:`exact_mode`).

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
    _check_probe_options(method, chunk, ad_mode)
    f, x, out = _batch_function(apply, params, x)
    outputs, per_example = _batched_frobenius_sq(
        f, x, out, method, key, num_projections, chunk, ad_mode
    )
    penalty = jnp.mean(per_example)
    return (outputs, penalty) if return_outputs else penalty


def _batch_function(
    apply: Callable[[Any, jax.Array], jax.Array], params: Any, x: ArrayLike
) -> tuple[Callable[[jax.Array], jax.Array], jax.Array, jax.ShapeDtypeStruct]:
    """``apply(params, .)`` as a function of the batch, the batch, its output shape."""
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
    return f, x, out


def exact_mode(
    apply: Callable[[Any, jax.Array], jax.Array], params: Any, x: ArrayLike
) -> Literal["forward", "reverse"]:
    """The mode :func:`jacobian_penalty` with ``method="exact"`` and
    ``ad_mode="auto"`` uses for this model and batch shape.

    The exact penalty needs all of J (C outputs by D inputs) for every example:
    forward mode pushes the D basis vectors of input space through the linearised
    network (D JVPs), reverse mode pulls the C basis vectors of output space back
    (C VJPs). The cost model counts one probe's work in the jaxpr of each pass:
    multiply-adds of matrix products and convolutions, plus one per value the other
    operations create. Operations on the probe and constants alone (a basis vector
    times a weight matrix) are shared by all examples: when they save more than
    ``GROUPING_GAIN`` of the rest, the exact method linearises groups of examples
    under a ``vmap`` and runs them once per probe, else the batch is linearised at
    once and they run for every example. The mode with the lower D x (forward work)
    x ``FORWARD_MODE_COST`` against C x (reverse work) wins.

    ``FORWARD_MODE_COST`` = 1.14 is measured: on the tanh MLP D-128-128-C with a
    batch of 64 (one Adam step of cross-entropy plus the penalty, 2-core x86-64
    CPU, ``benchmarks/jacobian_scaling.py``) reverse mode stayed the faster up to
    C = 80 for D = 64 and up to C = 370 for D = 256, and the model's crossovers are
    C = 77 and 380. The bare count puts both at C = D (the rule ``C <= D``), where
    reverse mode was 1.2x faster (D = 64). Near a crossover the two modes differ by
    a few percent, so the model's misses there cost little. A mode f cannot be
    differentiated in (a ``lax.while_loop`` has no VJP, a ``custom_vjp`` no JVP) is
    never chosen. The model reads the jaxpr only: it runs once per trace, at no
    run-time cost.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.models import MLP
      >>> x = jnp.zeros((64, 64))
      >>> modes = {}
      >>> for c in (10, 64, 100):
      ...     model = MLP((128, 128, c))
      ...     params = model.init(jax.random.key(0), x)
      ...     modes[c] = exact_mode(model.apply, params, x)
      >>> modes
      {10: 'reverse', 64: 'reverse', 100: 'forward'}
    """
    f, x, out = _batch_function(apply, params, x)
    return _exact_plan(f, x, out, "auto", None).mode


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
    chunk: Chunk = "auto",
    ad_mode: ADMode = "auto",
) -> Callable[[Any, Any, jax.Array], Any]:
    """Turn ``loss_fn(params, batch, key)`` into ``loss + strength * mean_batch R``.

    R is :func:`jacobian_penalty` of ``apply(params, x_batch)`` (a Flax linen
    ``module.apply``, or an NNX model split as in :func:`jacobian_penalty`) on the
    inputs ``inputs(batch)`` (default: ``batch[0]``, as for ``(x, y)`` batches), with
    ``method``, ``num_projections``, ``chunk`` and ``ad_mode``. The
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
    _check_probe_options(method, chunk, ad_mode)
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
            chunk=chunk,
            ad_mode=ad_mode,
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
    chunk: Chunk = "auto",
    ad_mode: ADMode = "auto",
) -> Callable[[Any, tuple[jax.Array, jax.Array], jax.Array], jax.Array]:
    """Cross-entropy + strength * mean R, the logits from the penalty's forward pass.

    ``loss_fn(params, (x, y), key)`` = mean_b CE(z_b, y_b) + strength * mean_b R(x_b)
    where z = ``apply(params, x)`` are the logits, CE is
    :func:`chainlab.losses.cross_entropy` and the penalty is :func:`jacobian_penalty`
    with ``method``, ``num_projections``, ``chunk``, ``ad_mode`` and the whole
    ``key``. The logits come from the forward pass the penalty runs anyway
    (``return_outputs=True``), so the model runs once per step, as in Hoffman et
    al.'s code; :func:`with_jacobian_penalty` wraps any loss instead, at the price of
    a second forward pass. ``strength >= 0`` is checked when it is concrete.

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
    _check_probe_options(method, chunk, ad_mode)
    check_nonnegative("strength", strength)
    check_finite("strength", strength)
    options = {
        "method": method,
        "num_projections": num_projections,
        "chunk": chunk,
        "ad_mode": ad_mode,
    }

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

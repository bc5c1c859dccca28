"""Derivative checks: finite differences and custom rules against a reference.

Three small tools that tests and experiments share:

- :func:`numerical_jacobian` / :func:`numerical_grad`: finite-difference derivatives of
  a function of an array or a pytree of arrays (central, forward or backward steps).
  One-sided differences are how one checks a kink convention: at a kink the central
  difference returns the mean of the left and right slopes.
- :func:`max_abs_error` / :func:`max_rel_error`: one number for the distance between two
  derivative pytrees.
- :func:`compare_rules`: a function with a custom derivative rule against a reference
  implementation of the same maths, in forward mode (jvp) and reverse mode (vjp), along
  random directions.
- :func:`derivatives_by_mode`: the derivative at a point by every autodiff mode, or
  the error a mode raises (a ``custom_vjp`` function has no forward mode).

Finite differences lose about half (one-sided) or two thirds (central) of the digits, so
use them in float64 (``jax.enable_x64``); in float32 expect agreement to ~1e-3 at best.

The function under test is a closure ``f(x)`` of an array or a pytree (like
``jax.grad``); for a model, close over it: ``lambda p: loss(model.apply(p, x))``.
Settings are Python values (``eps > 0``, ``method``) and are always checked.
"""

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from chainlab.validation import (
    as_real_float,
    check_choice,
    check_dtype,
    check_positive,
    check_rank,
    check_scalar_output,
)

Difference = Literal["central", "forward", "backward"]
METHODS: tuple[Difference, ...] = ("central", "forward", "backward")

PyTree = Any


def _floating_leaves(tree: PyTree, name: str) -> list[jax.Array]:
    """The leaves of ``tree`` as arrays; at least one, all of a floating dtype."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    if not leaves:
        raise ValueError(f"{name} must hold at least one array, got {tree!r}")
    for leaf in leaves:
        check_dtype(name, leaf, jnp.floating)
    return leaves


def numerical_jacobian(
    f: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    eps: float | None = None,
    method: Difference = "central",
) -> PyTree:
    r"""Finite-difference Jacobian of an array-valued ``f`` at ``x`` (array or pytree).

    Coordinate i of the flattened input moves by :math:`h_i = \epsilon \max(1, |x_i|)`:

    .. math::
        \text{central: } \frac{f(x + h_i e_i) - f(x - h_i e_i)}{2 h_i}, \quad
        \text{forward: } \frac{f(x + h_i e_i) - f(x)}{h_i}, \quad
        \text{backward: } \frac{f(x) - f(x - h_i e_i)}{h_i}.

    Errors are O(h^2) (central) or O(h) (one-sided) plus round-off of order
    ``machine_eps / h``; the default ``eps`` balances the two: ``machine_eps ** (1/3)``
    for central, ``machine_eps ** (1/2)`` for one-sided differences. At a kink the
    forward difference tends to the right derivative, the backward one to the left
    derivative and the central one to their mean. ``f`` is evaluated under
    ``jax.vmap`` over all perturbations at once. Reference: Nocedal & Wright, "Numerical
    Optimization", 2nd ed., section 8.1.

    Args:
      f: a JAX-traceable function of ``x`` returning an array.
      x: an array or a pytree of floating arrays.
      eps: the relative step ``> 0``; ``None`` picks the default above for ``x``'s
        dtype.
      method: ``"central"``, ``"forward"`` or ``"backward"``.

    Returns:
      The layout of ``jax.jacfwd(f)(x)``: ``x``'s structure, each leaf of shape
      ``f(x).shape + leaf.shape``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.gradcheck import numerical_jacobian
      >>> with jax.enable_x64(True):
      ...     j = numerical_jacobian(jnp.sin, jnp.array([0.0, 1.0]))
      ...     print(round(float(j[1, 1]), 6), float(j[0, 1]))
      0.540302 0.0
      >>> with jax.enable_x64(True):
      ...     right = numerical_jacobian(jnp.abs, jnp.array(0.0), method="forward")
      ...     central = numerical_jacobian(jnp.abs, jnp.array(0.0))
      ...     print(float(right), float(central))
      1.0 0.0
    """
    check_choice("method", method, METHODS)
    if eps is not None:
        check_rank("eps", eps, 0)
        check_positive("eps", eps)
    leaves = _floating_leaves(x, "x")
    flat, unravel = ravel_pytree(x)
    if eps is None:
        machine_eps = float(jnp.finfo(flat.dtype).eps)
        eps = machine_eps ** (1 / 3 if method == "central" else 1 / 2)
    step = eps * jnp.maximum(1.0, jnp.abs(flat))  # (n,)
    shifts = jnp.diag(step)  # row i moves coordinate i by step[i]

    def evaluate(v: jax.Array) -> jax.Array:
        out = f(unravel(v))
        if not isinstance(out, jax.Array | np.ndarray | float | int):
            raise TypeError(f"f must return an array, got {type(out).__name__}")
        return jnp.asarray(out)

    evaluate_all = jax.vmap(evaluate)
    center = flat[None, :]
    if method == "central":
        difference = evaluate_all(center + shifts) - evaluate_all(center - shifts)
        denominator = 2 * step
    elif method == "forward":
        plus = evaluate_all(center + shifts)
        difference = plus - jnp.broadcast_to(evaluate(flat), plus.shape)
        denominator = step
    else:
        minus = evaluate_all(center - shifts)
        difference = jnp.broadcast_to(evaluate(flat), minus.shape) - minus
        denominator = step
    out_ndim = difference.ndim - 1
    columns = difference / denominator.reshape((-1,) + (1,) * out_ndim)  # (n, *out)
    jacobian = jnp.moveaxis(columns, 0, -1)  # (*out, n)
    out_shape = jacobian.shape[:-1]
    sizes = [leaf.size for leaf in leaves]
    pieces = jnp.split(jacobian, np.cumsum(sizes)[:-1], axis=-1)
    blocks = [
        piece.reshape(out_shape + leaf.shape).astype(leaf.dtype)
        for piece, leaf in zip(pieces, leaves, strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(x), blocks)


def numerical_grad(
    f: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    eps: float | None = None,
    method: Difference = "central",
) -> PyTree:
    """Finite-difference gradient of a scalar-valued ``f``: ``jax.grad``'s layout.

    Same differences and step as :func:`numerical_jacobian`, which it calls.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.gradcheck import numerical_grad
      >>> with jax.enable_x64(True):
      ...     g = numerical_grad(lambda p: p["a"] * p["b"] ** 2, {"a": 2.0, "b": 3.0})
      ...     print(round(float(g["a"]), 6), round(float(g["b"]), 6))
      9.0 12.0
    """
    check_scalar_output("f", f, x, hint="; use numerical_jacobian")
    return numerical_jacobian(f, x, eps=eps, method=method)


def _paired_leaves(a: PyTree, b: PyTree) -> list[tuple[jax.Array, jax.Array]]:
    structure_a, structure_b = jax.tree.structure(a), jax.tree.structure(b)
    if structure_a != structure_b:
        raise ValueError(
            f"cannot compare different structures: {structure_a} vs {structure_b}"
        )
    pairs = []
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        leaf_a, leaf_b = jnp.asarray(leaf_a), jnp.asarray(leaf_b)
        if leaf_a.shape != leaf_b.shape:
            raise ValueError(
                f"cannot compare arrays of shapes {leaf_a.shape} and {leaf_b.shape}"
            )
        pairs.append((leaf_a, leaf_b))
    return pairs


def max_abs_error(a: PyTree, b: PyTree) -> jax.Array:
    r"""Largest elementwise :math:`|a - b|` over two pytrees of the same structure.

    NaN anywhere gives NaN, so a broken derivative cannot pass as a small error.

    Example:
      >>> from chainlab.gradcheck import max_abs_error
      >>> float(max_abs_error({"w": [1.0, 2.0]}, {"w": [1.0, 2.5]}))
      0.5
    """
    pairs = _paired_leaves(a, b)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x - y)) for x, y in pairs]))


def max_rel_error(a: PyTree, b: PyTree) -> jax.Array:
    r"""Error of ``a`` relative to the reference ``b``, in the max norm.

    .. math:: \frac{\max_i |a_i - b_i|}{\max_i |b_i|}

    over all leaves (0 when both are all zero). Normalising by the largest reference
    entry, not entry by entry, keeps near-zero entries from blowing the ratio up.

    Example:
      >>> from chainlab.gradcheck import max_rel_error
      >>> round(float(max_rel_error([1.0, 4.1], [1.0, 4.0])), 4)
      0.025
    """
    pairs = _paired_leaves(a, b)
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(y)) for _, y in pairs]))
    error = max_abs_error(a, b)
    tiny = jnp.finfo(jnp.result_type(error, float)).tiny
    return jnp.where(error == 0, 0.0, error / jnp.maximum(scale, tiny))


class RuleComparison(NamedTuple):
    """Largest absolute differences between a function and its reference.

    Attributes:
      primal: of the outputs.
      jvp: of the forward-mode tangents along one random input direction.
      vjp: of the reverse-mode cotangents (all inputs) for one random output cotangent.
    """

    primal: jax.Array
    jvp: jax.Array
    vjp: jax.Array


def compare_rules(
    f: Callable[..., jax.Array],
    reference: Callable[..., jax.Array],
    *primals: PyTree,
    key: jax.Array,
) -> RuleComparison:
    """Compare ``f`` (e.g. a custom-rule function) with ``reference`` in both modes.

    Draws a random tangent for every primal and a random cotangent for the output
    (standard normal, from ``key``), then compares ``jax.jvp`` and ``jax.vjp`` of the
    two functions. A single random direction detects any difference between two linear
    maps with probability one, at the cost of one jvp and one vjp. Use points away from
    kinks, where the reference's derivative is the true one. If ``f`` does not support
    a mode, JAX's own error is raised (forward mode of a ``custom_vjp`` function raises
    ``TypeError``).

    Args:
      f: the function under test.
      reference: the same mathematics, differentiated by plain autodiff or in closed
        form.
      *primals: the point, one argument per positional parameter of ``f``.
      key: a PRNG key for the random directions.

    Returns:
      A :class:`RuleComparison` of maximum absolute differences.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.activations import relu
      >>> from chainlab.gradcheck import compare_rules
      >>> x = jnp.array([-1.0, 0.5, 2.0])
      >>> c = compare_rules(relu, jax.nn.relu, x, key=jax.random.key(0))
      >>> float(c.primal), float(c.jvp), float(c.vjp)
      (0.0, 0.0, 0.0)
    """
    if not primals:
        raise ValueError("primals must hold at least one argument, got none")
    for i, primal in enumerate(primals):
        _floating_leaves(primal, f"primals[{i}]")
    tangent_key, cotangent_key = jax.random.split(key)
    tangents = _random_like(tangent_key, primals)
    out, tangent_out = jax.jvp(f, primals, tangents)
    ref_out, ref_tangent_out = jax.jvp(reference, primals, tangents)
    cotangent = _random_like(cotangent_key, out)
    _, pullback = jax.vjp(f, *primals)
    _, ref_pullback = jax.vjp(reference, *primals)
    return RuleComparison(
        primal=max_abs_error(out, ref_out),
        jvp=max_abs_error(tangent_out, ref_tangent_out),
        vjp=max_abs_error(pullback(cotangent), ref_pullback(cotangent)),
    )


def _random_like(key: jax.Array, tree: PyTree) -> PyTree:
    leaves, structure = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    draws = [
        jax.random.normal(k, jnp.shape(leaf), jnp.asarray(leaf).dtype)
        for k, leaf in zip(keys, leaves, strict=False)
    ]
    return jax.tree.unflatten(structure, draws)


Mode = Literal[
    "grad", "jvp", "jacfwd", "jacrev", "hessian", "jacfwd(grad)", "jacrev(grad)"
]


def _mode_derivatives(f: Callable[[jax.Array], jax.Array]) -> dict[Mode, Callable]:
    return {
        "grad": jax.grad(f),
        "jvp": lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[1],
        "jacfwd": jax.jacfwd(f),
        "jacrev": jax.jacrev(f),
        "hessian": jax.hessian(f),
        "jacfwd(grad)": jax.jacfwd(jax.grad(f)),
        "jacrev(grad)": jax.jacrev(jax.grad(f)),
    }


MODES: tuple[Mode, ...] = tuple(_mode_derivatives(jnp.sum))


class ModeOutcome(NamedTuple):
    """What one autodiff mode gave: a value, or the error it raised.

    Attributes:
      value: the derivative, or ``None`` when the mode raised.
      error: ``None``, or ``"TypeError: <first line of the message>"``.
    """

    value: jax.Array | None
    error: str | None


def derivatives_by_mode(
    f: Callable[[jax.Array], jax.Array], x: jax.typing.ArrayLike
) -> dict[Mode, ModeOutcome]:
    """The derivative of a scalar ``f`` at ``x`` by every autodiff mode, or its error.

    Modes (each jitted and run on its own, so one failing mode does not hide the
    others): ``jax.grad``; ``jax.jvp`` along ``ones_like(x)`` (for a scalar ``x`` the
    derivative itself); ``jax.jacfwd`` and ``jax.jacrev`` (first derivatives, forward
    and reverse); ``jax.hessian`` and the two Jacobians of the gradient (second
    derivatives; ``hessian`` and ``jacfwd(grad)`` are forward-over-reverse). For a
    ``custom_jvp`` rule all modes agree. A ``custom_vjp`` function has no forward mode:
    ``jvp`` and ``jacfwd`` raise JAX's ``TypeError``, which is recorded, not raised;
    forward over reverse works only if the rule's own forward and backward functions
    are forward-differentiable (they are not if they call the ``custom_vjp`` itself).
    ``f`` itself must trace: its own errors (and a non-scalar output) are raised.

    Args:
      f: a scalar-valued function of one array (a closure, like ``jax.grad``'s).
      x: the point, a real floating array (ints promoted).

    Returns:
      ``{mode: ModeOutcome}`` in the order of ``MODES``.

    Example:
      >>> import jax.numpy as jnp
      >>> from chainlab.activations import relu
      >>> outcomes = derivatives_by_mode(relu, 0.0)
      >>> float(outcomes["grad"].value), float(outcomes["hessian"].value)
      (0.0, 0.0)
    """
    x = as_real_float("x", x)
    check_scalar_output("f", f, x)
    outcomes = {}
    for mode, derivative in _mode_derivatives(f).items():
        try:
            outcomes[mode] = ModeOutcome(jax.jit(derivative)(x), None)
        except Exception as error:  # recorded: which modes fail is the measurement
            reason = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            outcomes[mode] = ModeOutcome(None, reason)
    return outcomes

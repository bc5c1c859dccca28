"""Derivatives at kinks: each convention, the fan-out sum, forward mode vs custom_vjp.

Four questions, each answered numerically in float64:

1. Which derivative does each activation give at its kink x = 0? chainlab's rules
   (ELU right/left, ReLU, leaky ReLU, maxout ties) against JAX's own ``jax.nn.relu``,
   ``jnp.maximum(x, 0)``, ``jax.nn.leaky_relu``, ``jax.nn.elu`` and ``jnp.max``, with
   one-sided finite differences showing the left and right slopes.
2. Fan-out: when one activation h feeds several branches g_i, the chain rule sums the
   branch gradients, dL/dx = J_h(x)^T sum_i dg_i/dh. The branches' terms split at h by
   ``chainlab.paths.decompose``, summed, against ``jax.grad`` and central differences.
3. Modes: the ``custom_jvp`` rules work in ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``
   and the Jacobian of the gradient; a ``custom_vjp`` ReLU
   (``chainlab.activations.relu_reverse_only``) supports only reverse mode, and the
   error JAX raises is reported verbatim.
4. A figure of each activation and its derivative, the kink convention marked.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from chainlab.activations import elu, leaky_relu, maxout, relu, relu_reverse_only
from chainlab.data import fan_out_problem
from chainlab.gradcheck import (
    MODES,
    compare_rules,
    derivatives_by_mode,
    max_abs_error,
    numerical_grad,
)
from chainlab.paths import decompose, tag
from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir

# Central differences in float64 (step ~6e-6) on O(1) smooth functions are accurate to
# ~1e-10; 1e-6 leaves room for the 8-dimensional fan-out while any wrong rule (an O(1)
# mistake in one derivative) is far above it.
FANOUT_TOLERANCE = 1e-6
# Away from the kink the rules are the plain derivatives: float64 round-off only.
RULE_TOLERANCE = 1e-12
SOURCE = "chainlab/activations.py (kink conventions)"
JAX_VJP = "JAX documentation: jax.custom_vjp"
# Check labels, and the routes of _kink_routes: the columns of Table 1.
AWAY, REVERSE_ONLY = "away from the kink", "custom_vjp is reverse-mode only"
JNP_TIE = "JAX's tie rule: 1/2, neither side"
COLUMNS = ("left slope", "right slope", "central FD", "jax.grad", "jax.jvp", "2nd")

# A scalar maxout with three pieces z = (-x, x / 2, 2x - 3/2): kinks at x = 0 (pieces 0
# and 1 tie at 0, piece 0 wins: slope -1, the left slope) and at x = 1 (pieces 1 and 2
# tie at 1/2, piece 1 wins: slope 1/2, again the left slope; reordering the pieces
# would give the right slopes). Both ties are exact in floating point.
MAXOUT_WEIGHT = np.array([-1.0, 0.5, 2.0]).reshape(3, 1, 1)
MAXOUT_BIAS = np.array([0.0, 0.0, -1.5]).reshape(3, 1)
MAXOUT_PIECES = (MAXOUT_WEIGHT, MAXOUT_BIAS)
MAXOUT_KINKS = (0.0, 1.0)


def _scalar_maxout(x: jax.Array) -> jax.Array:
    return maxout(x[None], *(jnp.asarray(a, x.dtype) for a in MAXOUT_PIECES))[0]


def _scalar_jnp_max(x: jax.Array) -> jax.Array:
    return jnp.max(jnp.asarray(MAXOUT_WEIGHT[:, 0, 0] * x + MAXOUT_BIAS[:, 0], x.dtype))


def _activations(config: ml_collections.ConfigDict) -> dict[str, Callable]:
    alpha, slope = config.elu_alpha, config.leaky_slope
    return {
        "relu": relu,
        f"leaky_relu(slope={slope})": lambda x: leaky_relu(x, slope),
        f"elu(alpha={alpha}, side='right')": lambda x: elu(x, alpha, side="right"),
        f"elu(alpha={alpha}, side='left')": lambda x: elu(x, alpha, side="left"),
        "maxout(-x, x/2, 2x-3/2)": _scalar_maxout,
    }


def _references(config: ml_collections.ConfigDict) -> dict[str, Callable]:
    alpha, slope = config.elu_alpha, config.leaky_slope
    return {
        "jax.nn.relu": jax.nn.relu,
        "jnp.maximum(x, 0)": lambda x: jnp.maximum(x, 0.0),
        f"jax.nn.leaky_relu(slope={slope})": lambda x: jax.nn.leaky_relu(x, slope),
        f"jax.nn.elu(alpha={alpha})": lambda x: jax.nn.elu(x, alpha),
        "jnp.max(-x, x/2, 2x-3/2)": _scalar_jnp_max,
    }


def _kink_routes(f: Callable, zero: jax.Array) -> dict[str, jax.Array]:
    """Derivatives of a scalar function at x = 0 by every route (``COLUMNS``)."""
    return {
        "left slope": numerical_grad(f, zero, method="backward"),
        "right slope": numerical_grad(f, zero, method="forward"),
        "central FD": numerical_grad(f, zero),
        "jax.grad": jax.grad(f)(zero),
        "jax.jvp": jax.jvp(f, (zero,), (jnp.ones_like(zero),))[1],
        "2nd": jax.hessian(f)(zero),
    }


def kink_derivatives(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Table 1: the derivative each convention gives at x = 0."""
    functions = {**_activations(config), **_references(config)}
    # One compiled program for the whole table (compiling each route separately is
    # most of the run time).
    table = jax.jit(
        lambda zero: {name: _kink_routes(f, zero) for name, f in functions.items()}
    )
    rows = jax.tree.map(float, table(jnp.zeros((), jnp.float64)))
    table_rows = [
        [f"`{f}`", *(f"{rows[f][c]:.4g}" for c in COLUMNS)] for f in functions
    ]
    workdir.note(
        "**Derivative at the kink x = 0** (float64). *left/right*: one-sided finite "
        "differences (the two slopes); *central*: their mean, which is also what "
        "`jnp.maximum`/`jnp.max` return at a tie; *grad*, *jvp*: the convention "
        "autodiff uses; *2nd*: `jax.hessian` at 0.\n\n"
        + markdown_table(["function", *COLUMNS], table_rows)
    )
    alpha, slope = config.elu_alpha, config.leaky_slope
    names = list(functions)  # chainlab's rules 0..4, then JAX's 5..9
    spec = [  # (result, function, column, label, value; label None: reported only)
        ("elu_grad_at_zero_right", 2, "jax.grad", "right derivative", 1.0),
        ("elu_grad_at_zero_left", 3, "jax.grad", "alpha, left derivative", alpha),
        ("relu_grad_at_zero", 0, "jax.grad", "left derivative", 0.0),
        ("leaky_relu_grad_at_zero", 1, "jax.grad", "slope, left derivative", slope),
        ("maxout_grad_at_tie", 4, "jax.grad", "piece 0 wins the tie, not split", -1.0),
        ("elu_second_derivative_at_zero_right", 2, "2nd", "right side", 0.0),
        ("elu_second_derivative_at_zero_left", 3, "2nd", "alpha, left", alpha),
        ("jax_nn_relu_grad_at_zero", 5, "jax.grad", None, None),
        ("jnp_maximum_grad_at_zero", 6, "jax.grad", None, None),
        ("jax_nn_leaky_relu_grad_at_zero", 7, "jax.grad", None, None),
        ("jax_nn_elu_grad_at_zero", 8, "jax.grad", None, None),
        ("jnp_max_grad_at_tie", 9, "jax.grad", None, None),
    ]
    results = {key: rows[names[i]][column] for key, i, column, *_ in spec}
    for key, _, _, label, value in spec:
        if label is not None:
            workdir.check(key, results[key], equals=value, label=label, source=SOURCE)
    key = "jnp_maximum_grad_at_zero"
    workdir.check(key, results[key], info=JNP_TIE, source="jax.numpy")
    return results


def fanout(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Table 2: one activation feeding several branches; gradients sum (float64)."""
    d, m = config.fanout_dim, config.fanout_branches
    weight, bias, heads, points = fan_out_problem(
        jax.random.key(config.seed), d, m, config.fanout_trials
    )
    alpha = config.elu_alpha

    def hidden(x):  # the shared activation, with the left-side ELU convention
        return elu(weight @ x + bias, alpha, side="left")

    def loss(x):  # h is tagged; each branch, in its own scope, is one use of it
        h, total = tag(hidden(x), "h"), 0.0
        for i in range(m):
            with jax.named_scope(f"branch{i}"):
                total = total + jnp.sum(jnp.tanh(heads[i] @ h)) * (i + 1)
        return total

    @jax.jit
    @jax.vmap
    def check(x):
        by_scope = decompose(loss, x, at="h").group(lambda p: p.scope)
        terms = [by_scope[f"branch{i}"] for i in range(m)]  # J_h^T dg_i/dh
        branch_sum = sum(terms)  # the chain rule: J_h^T sum_i dg_i/dh
        finite_difference = numerical_grad(loss, x)
        return {
            "sum": max_abs_error(branch_sum, finite_difference),
            "autodiff": max_abs_error(branch_sum, jax.grad(loss)(x)),
            # Overwriting instead of accumulating: the last branch's term only.
            "last_only": max_abs_error(terms[-1], finite_difference),
            "margin": jnp.min(jnp.abs(weight @ x + bias)),
        }

    errors = check(points)
    results = {
        "fanout_max_abs_error": float(jnp.max(errors["sum"])),
        "fanout_autodiff_vs_branch_sum": float(jnp.max(errors["autodiff"])),
        "fanout_last_branch_only_error": float(jnp.max(errors["last_only"])),
        "fanout_min_abs_preactivation": float(jnp.min(errors["margin"])),
    }
    for key in ("fanout_max_abs_error", "fanout_autodiff_vs_branch_sum"):
        workdir.check(
            key, results[key], below=FANOUT_TOLERANCE, source="chain rule (fan-out sum)"
        )
    workdir.note(
        f"**Fan-out.** x in R^{d} -> h = elu(W x + b) feeds {m} branches g_i(h) = i * "
        f"sum(tanh(A_i h)); L = sum_i g_i; {config.fanout_trials} random points. "
        "Keeping only the last branch's gradient (overwriting instead of "
        f"accumulating) misses by {results['fanout_last_branch_only_error']:.3g}. "
        f"Smallest |pre-activation|: {results['fanout_min_abs_preactivation']:.3g}, "
        "far from the kink at the finite-difference step (~6e-6)."
    )
    return results


def autodiff_modes(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Table 3: every autodiff mode at the kink; custom_jvp vs custom_vjp."""
    zero = jnp.zeros((), jnp.float64)
    functions = {**_activations(config), "relu via custom_vjp": relu_reverse_only}
    outcomes = {name: derivatives_by_mode(f, zero) for name, f in functions.items()}

    def cell(outcome) -> str:
        return "fails" if outcome.error else f"{float(outcome.value):.4g}"

    table_rows = [[f"`{f}`", *map(cell, row.values())] for f, row in outcomes.items()]
    custom_vjp_row = outcomes.pop("relu via custom_vjp")
    forward_error = custom_vjp_row["jvp"].error
    workdir.note(
        "**Autodiff modes at x = 0** (the kink; `chainlab.gradcheck."
        "derivatives_by_mode`). Each cell is the derivative returned, or the error "
        "raised.\n\n"
        + markdown_table(["function", *MODES], table_rows)
        + f"\n\ncustom_vjp under `jax.jvp` raises: `{forward_error}`"
    )
    jvp_ok = all(o.error is None for row in outcomes.values() for o in row.values())
    # The rules agree with plain autodiff of the same maths away from the kink.
    away = jnp.asarray([-1.3, -0.4, 0.7, 2.1], jnp.float64)
    key = jax.random.key(config.seed)
    left_elu = functools.partial(elu, alpha=config.elu_alpha, side="left")
    jax_elu = functools.partial(jax.nn.elu, alpha=config.elu_alpha)
    pairs = ((relu, jax.nn.relu), (left_elu, jax_elu))
    rule_gap = max(float(e) for p in pairs for e in compare_rules(*p, away, key=key))
    results = {
        "custom_jvp_all_modes_ok": jvp_ok,
        "custom_vjp_forward_mode_fails": forward_error is not None,
        "custom_vjp_forward_mode_error": forward_error,
        "custom_vjp_modes_ok": {m: o.error is None for m, o in custom_vjp_row.items()},
        "rules_vs_plain_autodiff_max_abs": rule_gap,
    }
    for key, label, source, threshold in (
        ("custom_jvp_all_modes_ok", "every mode works", SOURCE, {"equals": True}),
        ("custom_vjp_forward_mode_fails", REVERSE_ONLY, JAX_VJP, {"equals": True}),
        ("rules_vs_plain_autodiff_max_abs", AWAY, SOURCE, {"at_most": RULE_TOLERANCE}),
    ):
        workdir.check(key, results[key], label=label, source=source, **threshold)
    return results


def _curves(f: Callable, grid: np.ndarray, kinks: tuple[float, ...]) -> list:
    """f and f' on the grid; f' at each kink and just left and right of it."""
    side_step = 1e-4  # off the kink, inside the neighbouring pieces

    @jax.jit
    def evaluate(grid, kinks):
        derivative = jax.vmap(jax.grad(f))
        sides = (kinks, kinks - side_step, kinks + side_step)
        return jax.vmap(f)(grid), derivative(grid), [derivative(k) for k in sides]

    return jax.tree.map(np.asarray, evaluate(jnp.asarray(grid), jnp.asarray(kinks)))


def figure(config: ml_collections.ConfigDict, workdir: Workdir) -> None:
    """Each activation (top) and its derivative (bottom), kink convention marked."""
    functions = _activations(config)
    fig, axes = new_figure(2, len(functions), size=(3.2 * len(functions), 5.6))
    grid = np.linspace(-2.0, 2.0, config.plot_points)
    for column, (name, f) in enumerate(functions.items()):
        kinks = MAXOUT_KINKS if name.startswith("maxout") else (0.0,)
        values, derivative, (at_kinks, left, right) = _curves(f, grid, kinks)
        top, bottom = axes[0, column], axes[1, column]
        top.plot(grid, values, color="C0")
        top.set_title(name, fontsize=9)
        # Draw the derivative piece by piece, so the jump at each kink stays visible.
        edges = [-np.inf, *kinks, np.inf]
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            inside = (grid > low) & (grid < high)
            bottom.plot(grid[inside], derivative[inside], color="C1")
        for kink, at, below, above in zip(kinks, at_kinks, left, right, strict=True):
            bottom.plot([kink, kink], [below, above], "o", mfc="white", color="C1")
            bottom.plot([kink], [at], "o", color="C3", label=f"at {kink:.3g}: {at:.3g}")
        bottom.legend(fontsize=7, loc="upper left")
        bottom.set_xlabel("x")
    axes[0, 0].set_ylabel("f(x)")
    axes[1, 0].set_ylabel("df/dx (autodiff)")
    workdir.save_figure(
        fig,
        "activations",
        caption="Activations (top) and their autodiff derivatives (bottom). Red: the "
        "value the custom_jvp rule returns at the kink; open circles: the one-sided "
        "limits.",
    )


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(True):
        results = kink_derivatives(config, workdir)
        results.update(fanout(config, workdir))
        results.update(autodiff_modes(config, workdir))
    figure(config, workdir)
    return results

"""Robust regression: squared vs Huber vs absolute loss under 10% gross errors.

A linear model y = X w + b is fitted by gradient descent to data in which a fraction of
the responses carries a large one-sided error. The squared loss lets every outlier pull
with a force proportional to its residual; Huber's derivative clip(r, -delta, delta)
caps that force at delta, the absolute loss at 1. What is measured:

1. The parameter error ||(w, b) - (w*, b*)||_2 of each fit (squared, Huber for several
   delta, absolute), each checked against an independent solver: ``numpy.linalg.lstsq``,
   ``scipy.optimize.least_squares(loss="huber", f_scale=delta)`` (whose objective is
   twice Huber's) and the linear program of ``sklearn``'s ``QuantileRegressor``.
2. The Huber derivative from ``jax.grad`` on a grid that contains r = 0 and
   r = +-delta exactly, against clip(r, -delta, delta) (must be identical), and the
   second derivative at +-delta (1: the quadratic side), where a ``jnp.minimum``-based
   formula gives 1/4.
3. Figures: the losses and their first and second derivatives around +-delta, and the
   parameter errors.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.optimize
from sklearn.linear_model import QuantileRegressor

from chainlab.losses import huber
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.training import fit

SOURCE = "issue 3"
# The gradient fits run in float32 with a decayed step size; the reference solvers in
# float64 to ~1e-10. A converged fit differs from the reference by a few 1e-4 on O(1)
# parameters; 2e-3 leaves margin and is far below the effect measured (~1).
SOLVER_AGREEMENT = 2e-3
# Huber must beat squared by at least this factor in parameter error.
HUBER_ADVANTAGE = 4.0


def _data(config: ml_collections.ConfigDict):
    rng = np.random.default_rng(config.seed)
    n, d = config.num_samples, config.num_features
    w_true = rng.normal(size=d)
    b_true = 1.0
    x = rng.normal(size=(n, d))
    y = x @ w_true + b_true + config.noise_std * rng.normal(size=n)
    outliers = rng.permutation(n)[: round(config.outlier_fraction * n)]
    y[outliers] += config.outlier_scale * rng.uniform(0.5, 1.5, size=outliers.size)
    return x, y, np.append(w_true, b_true), outliers


def _losses(config: ml_collections.ConfigDict) -> dict:
    named = {"squared": lambda r: 0.5 * r**2}
    for delta in config.huber_deltas:
        named[f"huber(delta={delta})"] = lambda r, delta=delta: huber(r, delta=delta)
    named["absolute"] = jnp.abs
    return named


def _gradient_fits(config, x, y, named: dict, workdir: Workdir) -> dict:
    """One Adam run over all losses at once: the objective is a sum of independent
    terms, each with its own parameters, and Adam is coordinate-wise, so this equals
    separate runs but compiles once."""
    d = x.shape[1]
    params = {name: {"w": jnp.zeros(d), "b": jnp.zeros(())} for name in named}

    def loss_fn(params, batch, key):
        del key
        xb, yb = batch
        per_loss = {
            name: jnp.mean(rho(yb - xb @ params[name]["w"] - params[name]["b"]))
            for name, rho in named.items()
        }
        return sum(per_loss.values()), per_loss

    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps)
    result = fit(
        loss_fn,
        params,
        optax.adam(schedule),
        (x.astype(np.float32), y.astype(np.float32)),
        steps=config.steps,
        batch_size=x.shape[0],
        seed=config.seed,
        has_aux=True,
        log_every=max(config.steps // 20, 1),
        **workdir.fit_options,
        name="fit_all_losses",
    )
    estimates = {
        name: np.append(np.asarray(p["w"]), float(p["b"]))
        for name, p in result.params.items()
    }
    return estimates


def _reference_fits(config, x, y) -> dict:
    design = np.column_stack([x, np.ones(len(y))])
    references = {"squared": np.linalg.lstsq(design, y, rcond=None)[0]}
    start = references["squared"]
    for delta in config.huber_deltas:
        # scipy's huber rho(z) on z = (r / f_scale)^2, times f_scale^2, is 2 h_delta(r).
        solution = scipy.optimize.least_squares(
            lambda theta: design @ theta - y,
            start,
            loss="huber",
            f_scale=delta,
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
        )
        references[f"huber(delta={delta})"] = solution.x
    median = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(x, y)
    references["absolute"] = np.append(median.coef_, median.intercept_)
    return references


def _derivative_grid(config) -> np.ndarray:
    span = 3.0 * max(config.huber_deltas)
    kinks = [0.0, *config.huber_deltas, *(-d for d in config.huber_deltas)]
    grid = np.linspace(-span, span, config.plot_points)
    return np.unique(np.concatenate([grid, kinks])).astype(np.float32)


def _min_based_huber(r: jax.Array, delta: float) -> jax.Array:
    """The common formulation 0.5 min(|r|, d)^2 + d (|r| - min(|r|, d)) (e.g. optax)."""
    quadratic = jnp.minimum(jnp.abs(r), delta)
    return 0.5 * quadratic**2 + delta * (jnp.abs(r) - quadratic)


@jax.jit
@functools.partial(jax.vmap, in_axes=(None, 0))
def _curves(r: jax.Array, delta: jax.Array) -> dict:
    """Loss, first and second derivative on the grid r, for each delta (one compile)."""

    def h(v):
        return huber(v, delta=delta)

    def h_min(v):
        return _min_based_huber(v, delta)

    return {
        "value": h(r),
        "first": jax.vmap(jax.grad(h))(r),
        "second": jax.vmap(jax.hessian(h))(r),
        "second_min_based": jax.vmap(jax.hessian(h_min))(r),
        "clip": jnp.clip(r, -delta, delta),
    }


def _derivative_checks(config, grid: np.ndarray) -> dict:
    deltas = tuple(config.huber_deltas)
    stacked = jax.device_get(
        _curves(jnp.asarray(grid), jnp.asarray(deltas, jnp.float32))
    )
    curves = {
        name: dict(zip(deltas, values, strict=True)) for name, values in stacked.items()
    }
    curves["first_error"] = float(np.max(np.abs(stacked["first"] - stacked["clip"])))
    return curves


def _figure_derivatives(config, grid, checks):
    figure, axes = new_figure(1, 3, size=(13.0, 3.8))
    r = grid
    axes[0].plot(r, 0.5 * r**2, color="0.6", ls="--", label="squared r²/2")
    axes[0].plot(r, np.abs(r), color="0.3", ls=":", label="absolute |r|")
    for delta in config.huber_deltas:
        axes[0].plot(r, checks["value"][delta], label=f"Huber δ={delta}")
        axes[1].plot(r, checks["first"][delta], label=f"jax.grad, δ={delta}")
        axes[2].plot(r, checks["second"][delta], label=f"jax.hessian, δ={delta}")
        at = np.asarray([-delta, 0.0, delta], np.float32)
        index = np.searchsorted(r, at)
        axes[1].scatter(at, checks["first"][delta][index], zorder=3, s=18, color="k")
        axes[2].scatter(
            at[[0, 2]], checks["second"][delta][index[[0, 2]]], zorder=3, s=18, c="k"
        )
    delta = config.huber_delta
    index = np.searchsorted(r, np.asarray([-delta, delta], np.float32))
    axes[2].scatter(
        r[index],
        checks["second_min_based"][delta][index],
        marker="x",
        color="tab:red",
        zorder=3,
        label=f"min-based formula at ±{delta}",
    )
    axes[0].set_ylim(0.0, 2.5 * max(config.huber_deltas) ** 2)
    axes[0].set_title("loss")
    axes[1].set_title("derivative (dots: r = 0, ±δ exactly)")
    axes[2].set_title("second derivative")
    for ax in axes:
        ax.set_xlabel("residual r")
        ax.legend(fontsize=7)
    return figure


def _figure_errors(errors: dict):
    figure, ax = new_figure(size=(6.5, 3.5))
    names = list(errors)
    ax.bar(range(len(names)), [errors[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("||θ̂ − θ*||₂")
    ax.set_title("parameter error under gross errors")
    return figure


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    if config.huber_delta not in config.huber_deltas:
        raise ValueError(
            f"huber_delta {config.huber_delta} must be one of huber_deltas "
            f"{tuple(config.huber_deltas)}"
        )
    x, y, theta_true, outliers = _data(config)
    named = _losses(config)
    estimates = _gradient_fits(config, x, y, named, workdir)
    references = _reference_fits(config, x, y)

    errors = {n: float(np.linalg.norm(estimates[n] - theta_true)) for n in named}
    agreement = {n: float(np.max(np.abs(estimates[n] - references[n]))) for n in named}
    headline = f"huber(delta={config.huber_delta})"

    grid = _derivative_grid(config)
    checks = _derivative_checks(config, grid)
    delta = config.huber_delta
    at_kinks = np.searchsorted(grid, np.asarray([-delta, delta], np.float32))
    second_at_delta = checks["second"][delta][at_kinks]

    workdir.check(
        "param_error_squared",
        errors["squared"],
        target="O(1): biased by the outliers",
        source=SOURCE,
    )
    workdir.check(
        "param_error_huber",
        errors[headline],
        target=f"< param_error_squared / {HUBER_ADVANTAGE:g}",
        source=SOURCE,
        passed=errors[headline] * HUBER_ADVANTAGE < errors["squared"],
    )
    workdir.check(
        "param_error_absolute",
        errors["absolute"],
        target=f"< param_error_squared / {HUBER_ADVANTAGE:g}",
        source=SOURCE,
        passed=errors["absolute"] * HUBER_ADVANTAGE < errors["squared"],
    )
    worst = max(agreement.values())
    workdir.check(
        "max abs diff: gradient fit vs reference solver",
        worst,
        target=f"< {SOLVER_AGREEMENT:g}",
        source="lstsq / scipy least_squares(huber) / LP median regression",
        passed=worst < SOLVER_AGREEMENT,
    )
    workdir.check(
        "max abs diff: jax.grad(huber) vs clip(r, -δ, δ), incl. r = 0, ±δ",
        checks["first_error"],
        target="0 exactly",
        source="issue 3 / DESIGN.md",
        passed=checks["first_error"] == 0.0,
    )
    workdir.check(
        f"huber'' at r = ±{delta}",
        second_at_delta.tolist(),
        target="[1, 1] (quadratic side owns the boundary)",
        source="chainlab.losses.huber docstring",
        passed=bool(np.all(second_at_delta == 1.0)),
    )

    rows = [
        "| loss | parameter error | max abs diff to reference solver |",
        "|---|---|---|",
        *(f"| {n} | {errors[n]:.4f} | {agreement[n]:.2e} |" for n in named),
    ]
    workdir.note(
        f"{len(outliers)} of {len(y)} responses ({config.outlier_fraction:.0%}) carry "
        f"a one-sided gross error in {config.outlier_scale:g} x [0.5, 1.5] "
        f"(noise std {config.noise_std:g}). Parameter error is "
        "||(w, b) - (w*, b*)||_2. One-sided outliers bias every M-estimator by an "
        "amount that grows with its influence bound (delta for Huber, 1 for the "
        "absolute loss, unbounded for the squared loss), so a small delta or the "
        "absolute loss is least biased here; a larger delta buys efficiency under "
        "clean Gaussian noise.\n\n" + "\n".join(rows)
    )
    workdir.save_figure(
        _figure_derivatives(config, grid, checks),
        "huber_derivatives",
        caption="Huber loss, its derivative (= clip, also at the marked r = 0, ±δ) "
        "and second derivative; crosses: the min-based formula's 1/4 at the kink.",
    )
    workdir.save_figure(
        _figure_errors(errors),
        "parameter_error",
        caption="Parameter error of each loss (log scale).",
    )
    return {
        "param_error_squared": errors["squared"],
        "param_error_huber": errors[headline],
        "param_error_absolute": errors["absolute"],
        "param_error_by_loss": errors,
        "max_reference_disagreement": worst,
        "huber_derivative_max_error": checks["first_error"],
        "huber_second_derivative_at_delta": second_at_delta.tolist(),
        "num_outliers": int(len(outliers)),
    }

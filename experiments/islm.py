"""IS-LM comparative statics: the aggregate demand slope by implicit differentiation.

The IS-LM equilibrium (Y, r) solves F(x, theta) = 0 for the policy and price level
theta = (G, T, M, P). Total differentiation (the multivariate chain rule) gives
dx*/dtheta = -(dF/dx)^-1 dF/dtheta, so the aggregate demand curve Y(P) has slope
dY/dP = [dx*/dtheta]_{Y, P} without ever solving for Y(P) in closed form. What is
measured:

1. The textbook linear economy (Mankiw, Macroeconomics, ch. 11, problem 3): its
   equilibrium, and dY/dP three ways: ``jax.grad`` through the Newton solver (whose
   derivative is the implicit function theorem, ``jax.lax.custom_root``), the closed
   form -(b / D) M / P^2 with D = h (1 - c) + b k, and central finite differences of
   the solver. Also the whole comparative-statics matrix against Cramer's rule.
2. Shifts in G and M: the new equilibria against the first-order prediction
   x* + dx*/dtheta . delta (exact for the linear model, second-order error otherwise).
3. A nonlinear economy with semi-log money demand L = k Y exp(-eta r), whose AD slope
   along the equilibrium is -b Y / (P (b + (1 - c) eta Y)).
4. A sweep over random linear economies (IFT vs closed form).
5. Figures: the IS and LM curves (with the shifted curves) and the AD curves with their
   tangents at P.
"""

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table, to_json
from chainlab.runner.workdir import Workdir
from chainlab.science.economics import (
    ISLM_PARAMETERS,
    ISLM_VARIABLES,
    aggregate_demand,
    comparative_statics,
    equilibrium_shift,
    islm_curve,
    islm_residual,
    linear_islm,
    linear_islm_closed_form,
    semilog_ad_slope,
    semilog_islm,
    solve_equilibrium,
)

MANKIW = "Mankiw, Macroeconomics, ch. 11, pr. 3"
IFT = "implicit function theorem (Simon & Blume, Mathematics for Economists, ch. 15)"
DIFFERENCES = "central differences, truncation O(h^2)"
# The IFT and the closed forms are both exact up to float64 rounding of O(1e3) numbers.
CLOSED_FORM_RTOL = 1e-10
# Central differences with step 1e-5 P: truncation |Y'''| h^2 / 6 ~ 1e-10 relative,
# rounding of a converged Newton solve (~1e-13) over 2h ~ 1e-10 relative.
FD_RTOL = 1e-7
# Equilibria of the linear economy: Newton lands on them to rounding.
EQUILIBRIUM_RTOL = 1e-10


LINEAR = ("c0", "c", "i0", "b", "k", "h")
POLICY = ("G", "T", "M", "P")
ECONOMIES = ("linear", "semilog")
SLOPES = ("ift", "closed_form", "finite_difference")
# Ranges of the random linear economies (uniform draws).
RANDOM_RANGES = {
    "c0": (50, 300), "c": (0.5, 0.95), "i0": (50, 300), "b": (5, 50), "k": (0.2, 2),
    "h": (20, 200), "G": (50, 200), "T": (50, 200), "M": (500, 2000), "P": (0.5, 4),
}  # fmt: skip


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(config.x64):
        return _run(config, workdir)


def _relative_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _analysis(config, theta) -> dict:
    """Every number and curve of the experiment, in one compiled program.

    Under jit a failed solve shows up as NaN (and fails the report's checks) rather
    than as an exception.
    """
    linear = linear_islm(**{name: config[name] for name in LINEAR})
    semilog = semilog_islm(
        **{name: config[name] for name in ("c0", "c", "i0", "b")},
        k=config.semilog_k,
        eta=config.semilog_eta,
    )
    policy = dict(G=config.G, T=config.T, M=config.M)
    shifts = {"G": config.delta_G, "M": config.delta_M}
    prices = jnp.linspace(config.price_min, config.price_max, config.plot_points)
    r_grid = jnp.linspace(0.0, 12.0, config.plot_points)
    step = config.fd_step * config.P

    def economy(model, theta, x0, closed_slope):
        F = partial(islm_residual, model)
        x_star = solve_equilibrium(F, x0, theta)
        dx = comparative_statics(F, x_star, theta)

        def ad(P):
            return aggregate_demand(model, P, **policy, x0=x_star)

        P = theta[ISLM_PARAMETERS.index("P")]
        slopes = {
            # jax.grad through the Newton solver: the implicit function theorem.
            "ad_slope_ift": jax.grad(ad)(P),
            "ad_slope_closed_form": closed_slope(x_star[0]),
            "ad_slope_finite_difference": (ad(P + step) - ad(P - step)) / (2 * step),
        }
        shift = partial(equilibrium_shift, F, x_star, theta)
        moves = {
            n: {"delta": d, **shift(index=ISLM_PARAMETERS.index(n), delta=d)._asdict()}
            for n, d in shifts.items()
        }
        return dict(x=x_star, dx=dx, slopes=slopes, shifts=moves, ad=ad(prices))

    @jax.jit
    def compute(theta):
        P = theta[ISLM_PARAMETERS.index("P")]
        policy_now = dict(zip(POLICY, theta, strict=True))
        closed = linear_islm_closed_form(**{n: config[n] for n in LINEAR}, **policy_now)
        dY_dP = closed[1][0, ISLM_PARAMETERS.index("P")]
        lin = economy(linear, theta, jnp.zeros(2, theta.dtype), lambda Y: dY_dP)
        semi_slope = partial(
            semilog_ad_slope, P=P, c=config.c, b=config.b, eta=config.semilog_eta
        )
        semi = economy(semilog, theta, lin["x"], semi_slope)
        lin["closed_form"] = closed
        Y0 = lin["x"][0]
        curves = {
            "IS": islm_curve(linear, r_grid, theta, market="IS", Y0=Y0),
            "LM": islm_curve(linear, r_grid, theta, market="LM", Y0=Y0),
            "LM semi-log": islm_curve(semilog, r_grid, theta, market="LM", Y0=Y0),
        }
        for name, delta in shifts.items():
            shifted = theta.at[ISLM_PARAMETERS.index(name)].add(delta)
            market = "IS" if name == "G" else "LM"
            curves[f"{market}, {name} + {delta:g}"] = islm_curve(
                linear, r_grid, shifted, market=market, Y0=Y0
            )
        return {"linear": lin, "semilog": semi, "curves": curves}

    analysis = jax.device_get(compute(theta))
    analysis["prices"] = np.asarray(prices)
    analysis["r_grid"] = np.asarray(r_grid)
    return analysis


def _random_economies(config) -> float:
    """Largest relative gap of dx*/dtheta, IFT vs Cramer's rule, in random economies."""
    rng = np.random.default_rng(config.seed)
    draws = {
        name: jnp.asarray(rng.uniform(*bounds, size=config.num_economies))
        for name, bounds in RANDOM_RANGES.items()
    }

    @jax.jit
    @jax.vmap
    def both(p):
        model = linear_islm(**{name: p[name] for name in LINEAR})
        theta = jnp.stack([p[name] for name in POLICY])
        F = partial(islm_residual, model)
        x_star = solve_equilibrium(F, jnp.zeros(2, theta.dtype), theta)
        return comparative_statics(F, x_star, theta), linear_islm_closed_form(**p)[1]

    ift, closed = jax.device_get(both(draws))
    return _relative_error(ift, closed)


def _figure(config, analysis):
    figure, axes = new_figure(1, 2, size=(11.0, 4.2))
    r_grid, curves = analysis["r_grid"], analysis["curves"]
    styles = {
        "IS": ("tab:blue", "-"),
        "LM": ("tab:orange", "-"),
        "LM semi-log": ("tab:green", ":"),
    }
    for name, Y in curves.items():
        color, style = styles.get(name, (styles[name[:2]][0], "--"))
        axes[0].plot(Y, r_grid, color=color, ls=style, label=name)
    for economy, color in (("linear", "k"), ("semilog", "tab:green")):
        x = analysis[economy]["x"]
        axes[0].scatter([x[0]], [x[1]], color=color, zorder=3, s=20)
    for name in ("G", "M"):
        x = analysis["linear"]["shifts"][name]["x"]
        axes[0].scatter([x[0]], [x[1]], color="0.4", zorder=3, s=14)
    axes[0].set(xlabel="output Y", ylabel="interest rate r", title="IS and LM curves")

    prices = analysis["prices"]
    for economy, color, label in (
        ("linear", "tab:blue", "linear"),
        ("semilog", "tab:green", "semi-log money demand"),
    ):
        Y0, slope = (
            analysis[economy]["x"][0],
            analysis[economy]["slopes"]["ad_slope_ift"],
        )
        axes[1].plot(analysis[economy]["ad"], prices, color=color, label=f"AD, {label}")
        # Tangent at P: Y = Y(P) + (dY/dP)(P' - P), for P' within +-40% of P.
        near = np.array([0.6, 1.4]) * config.P
        tangent = f"tangent, dY/dP = {slope:.2f}"
        axes[1].plot(
            Y0 + slope * (near - config.P), near, c=color, ls="--", label=tangent
        )
        axes[1].scatter([Y0], [config.P], color=color, zorder=3, s=20)
    axes[1].set(xlabel="output Y", ylabel="price level P", title="AD and its slope")
    for ax in axes:
        ax.legend(fontsize=7)
    return figure


def _check(workdir, config, analysis, lin, sweep_error):
    """The report's rows: every IFT figure against its closed form or differences."""
    check, (x_closed, dx_closed) = workdir.check, lin["closed_form"]
    x = lin["x"]
    check(
        "equilibrium (Y, r)", x, close_to=x_closed, rtol=EQUILIBRIUM_RTOL, source=MANKIW
    )
    for economy, label, source in (
        ("linear", "-(b/D) M/P^2", MANKIW),
        ("semilog", "-bY / (P (b + (1-c) eta Y))", "Cramer's rule on IS-LM"),
    ):
        slope = analysis[economy]["slopes"]  # jit returns dicts with sorted keys
        ift, closed, fd = (slope[f"ad_slope_{k}"] for k in SLOPES)
        name = f"{economy}: dY/dP by IFT (jax.grad through the solver)"
        tolerance = dict(rtol=CLOSED_FORM_RTOL, label=label, source=source)
        check(name, ift, close_to=closed, **tolerance)
        name = f"{economy}: dY/dP by finite differences"
        check(name, fd, close_to=ift, rtol=FD_RTOL, label="IFT", source=DIFFERENCES)
    error = _relative_error(lin["dx"], dx_closed)
    name = "dx*/dtheta vs Cramer's rule (max rel. error)"
    check(name, error, at_most=CLOSED_FORM_RTOL, source=IFT)
    for name, shift in lin["shifts"].items():
        check(
            f"equilibrium after {name} + {shift['delta']:g}",
            shift["x"],
            close_to=shift["predicted"],
            rtol=EQUILIBRIUM_RTOL,
            label="x* + (dx*/dtheta) delta",
            source=MANKIW,
        )
    name = f"{config.num_economies} random economies: max rel. gap IFT vs closed form"
    check(name, sweep_error, at_most=CLOSED_FORM_RTOL, source=IFT)


def _run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    theta = jnp.asarray([config[name] for name in POLICY], dtype=float)
    analysis = _analysis(config, theta)
    lin, semi = analysis["linear"], analysis["semilog"]
    sweep_error = _random_economies(config)
    _check(workdir, config, analysis, lin, sweep_error)

    names = [f"d{v}/d{p}" for v in ISLM_VARIABLES for p in ISLM_PARAMETERS]
    statics = [np.ravel(m) for m in (lin["dx"], lin["closed_form"][1], semi["dx"])]
    rows = [[name, *values] for name, *values in zip(names, *statics, strict=True)]
    header = ["derivative", "IFT (linear)", "Cramer's rule", "IFT (semi-log)"]
    workdir.note(
        "Comparative statics at the baseline equilibrium, "
        "dx*/dtheta = -(dF/dx)^-1 dF/dtheta:\n\n" + markdown_table(header, rows)
    )
    misses = "; ".join(
        f"{name} + {shift['delta']:g} gives Y = {shift['x'][0]:.4f} (predicted "
        f"{shift['predicted'][0]:.4f})"
        for name, shift in semi["shifts"].items()
    )
    workdir.note(
        "Semi-log economy: the first-order prediction of a shift misses by a "
        f"second-order term: {misses}."
    )
    workdir.save_figure(
        _figure(config, analysis),
        "islm_ad",
        caption="Left: IS and LM curves, shifted by G and M, and the semi-log LM "
        "curve. Right: aggregate demand Y(P) with its tangent at P, slope from the "
        "implicit function theorem.",
    )
    linear_slopes = to_json(lin["slopes"])
    return {
        "equilibrium": dict(zip(ISLM_VARIABLES, to_json(lin["x"]), strict=True)),
        **linear_slopes,
        "ad_slope_units": "dY/dP at the baseline P",
        "ad_slope_dP_dY": 1.0 / linear_slopes["ad_slope_ift"],
        "comparative_statics": dict(zip(names, statics[0].tolist(), strict=True)),
        "shifts": to_json({name: analysis[name]["shifts"] for name in ECONOMIES}),
        "semilog": {
            "equilibrium": dict(zip(ISLM_VARIABLES, to_json(semi["x"]), strict=True)),
            **to_json(semi["slopes"]),
        },
        "random_economies": {
            "count": config.num_economies,
            "max_rel_error_ift_vs_closed_form": sweep_error,
        },
    }

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
from chainlab.runner.workdir import Workdir
from chainlab.science.economics import (
    ISLM_PARAMETERS,
    ISLM_VARIABLES,
    aggregate_demand,
    comparative_statics,
    islm_residual,
    linear_islm,
    semilog_islm,
    solve_equilibrium,
)

SOURCE = "issue 7"
MANKIW = "Mankiw, Macroeconomics, ch. 11, pr. 3"
# The IFT and the closed forms are both exact up to float64 rounding of O(1e3) numbers.
CLOSED_FORM_RTOL = 1e-10
# Central differences with step 1e-5 P: truncation |Y'''| h^2 / 6 ~ 1e-10 relative,
# rounding of a converged Newton solve (~1e-13) over 2h ~ 1e-10 relative.
FD_RTOL = 1e-7
# Equilibria of the linear economy: Newton lands on them to rounding.
EQUILIBRIUM_RTOL = 1e-10


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(config.x64):
        return _run(config, workdir)


def _linear_model(config):
    return linear_islm(
        c0=config.c0, c=config.c, i0=config.i0, b=config.b, k=config.k, h=config.h
    )


def _semilog_model(config):
    return semilog_islm(
        c0=config.c0,
        c=config.c,
        i0=config.i0,
        b=config.b,
        k=config.semilog_k,
        eta=config.semilog_eta,
    )


def linear_closed_form(c0, c, i0, b, k, h, G, T, M, P):
    """Equilibrium (Y, r) and dx*/d(G, T, M, P) of the linear model by Cramer's rule.

    Y = (h A + b M / P) / D, A = c0 - c T + i0 + G, D = h (1 - c) + b k, and
    r = (k Y - M / P) / h from the LM curve.
    """
    D = h * (1 - c) + b * k
    A = c0 - c * T + i0 + G
    Y = (h * A + b * M / P) / D
    r = (k * Y - M / P) / h
    dY = jnp.stack([h, -c * h, b / P, -b * M / P**2]) / D
    d_money = jnp.stack([0.0 * P, 0.0 * P, 1 / P, -M / P**2])
    dr = (k * dY - d_money) / h
    return jnp.stack([Y, r]), jnp.stack([dY, dr])


def _relative_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _curve(model, theta, r_grid, equation: int, Y_guess):
    """Y(r) along one curve: IS (equation 0) or LM (equation 1), by a 1-D solve."""

    def solve(r):
        def F(Y, theta):
            residual = islm_residual(model, jnp.stack([Y[0], r]), theta)
            return residual[equation : equation + 1]

        return solve_equilibrium(F, jnp.stack([Y_guess]), theta)[0]

    return jax.vmap(solve)(r_grid)


def _analysis(config, linear, semilog, theta) -> dict:
    """Every number and curve of the experiment, in one compiled program.

    Under jit a failed solve shows up as NaN (and fails the report's checks) rather
    than as an exception.
    """
    policy = dict(G=config.G, T=config.T, M=config.M)
    shifts = {"G": config.delta_G, "M": config.delta_M}
    prices = jnp.linspace(config.price_min, config.price_max, config.plot_points)
    r_grid = jnp.linspace(0.0, 12.0, config.plot_points)
    step = config.fd_step * config.P

    def economy(model, theta, x0):
        F = partial(islm_residual, model)
        x_star = solve_equilibrium(F, x0, theta)

        def ad(P):
            return aggregate_demand(model, P, **policy, x0=x_star)

        P = theta[ISLM_PARAMETERS.index("P")]
        result = {
            "x": x_star,
            "dx": comparative_statics(F, x_star, theta),
            # jax.grad through the Newton solver: the implicit function theorem.
            "ad_slope_ift": jax.grad(ad)(P),
            "ad_slope_finite_difference": (ad(P + step) - ad(P - step)) / (2 * step),
            "ad_curve": ad(prices),
        }
        for name, delta in shifts.items():
            shifted = theta.at[ISLM_PARAMETERS.index(name)].add(delta)
            result[f"shift_{name}"] = solve_equilibrium(F, x_star, shifted)
        return result

    @jax.jit
    def compute(theta):
        lin = economy(linear, theta, jnp.zeros(2, theta.dtype))
        semi = economy(semilog, theta, lin["x"])
        Y0 = lin["x"][0]
        curves = {
            "IS": _curve(linear, theta, r_grid, 0, Y0),
            "LM": _curve(linear, theta, r_grid, 1, Y0),
            "LM semi-log": _curve(semilog, theta, r_grid, 1, Y0),
        }
        for name, delta in shifts.items():
            shifted = theta.at[ISLM_PARAMETERS.index(name)].add(delta)
            curve = "IS" if name == "G" else "LM"
            curves[f"{curve}, {name} + {delta:g}"] = _curve(
                linear, shifted, r_grid, 0 if curve == "IS" else 1, Y0
            )
        return {"linear": lin, "semilog": semi, "curves": curves}

    analysis = jax.device_get(compute(theta))
    analysis["prices"] = np.asarray(prices)
    analysis["r_grid"] = np.asarray(r_grid)
    return analysis


def _shifts(result, config) -> dict:
    """New equilibria after each policy shift, and the first-order prediction."""
    shifts = {}
    for name, delta in (("G", config.delta_G), ("M", config.delta_M)):
        predicted = result["x"] + result["dx"][:, ISLM_PARAMETERS.index(name)] * delta
        shifted = result[f"shift_{name}"]
        shifts[name] = {
            "delta": delta,
            "Y": float(shifted[0]),
            "r": float(shifted[1]),
            "Y_predicted": float(predicted[0]),
            "r_predicted": float(predicted[1]),
        }
    return shifts


def _random_economies(config) -> float:
    """Largest relative gap of dx*/dtheta, IFT vs Cramer's rule, in random economies."""
    rng = np.random.default_rng(config.seed)
    ranges = dict(
        c0=(50, 300),
        c=(0.5, 0.95),
        i0=(50, 300),
        b=(5, 50),
        k=(0.2, 2),
        h=(20, 200),
        G=(50, 200),
        T=(50, 200),
        M=(500, 2000),
        P=(0.5, 4),
    )
    draws = {
        name: jnp.asarray(rng.uniform(*bounds, size=config.num_economies))
        for name, bounds in ranges.items()
    }

    @jax.jit
    @jax.vmap
    def both(p):
        model = linear_islm(
            c0=p["c0"], c=p["c"], i0=p["i0"], b=p["b"], k=p["k"], h=p["h"]
        )
        theta = jnp.stack([p["G"], p["T"], p["M"], p["P"]])
        F = partial(islm_residual, model)
        x_star = solve_equilibrium(F, jnp.zeros(2, theta.dtype), theta)
        return comparative_statics(F, x_star, theta), linear_closed_form(**p)[1]

    ift, closed = jax.device_get(both(draws))
    return _relative_error(ift, closed)


def _figure(config, analysis, slopes):
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
        x = analysis["linear"][f"shift_{name}"]
        axes[0].scatter([x[0]], [x[1]], color="0.4", zorder=3, s=14)
    axes[0].set_xlabel("output Y")
    axes[0].set_ylabel("interest rate r")
    axes[0].set_title("IS and LM curves (dots: equilibria)")
    axes[0].legend(fontsize=7)

    prices = analysis["prices"]
    for economy, color, label in (
        ("linear", "tab:blue", "linear"),
        ("semilog", "tab:green", "semi-log money demand"),
    ):
        Y0, slope = analysis[economy]["x"][0], slopes[economy]["ad_slope_ift"]
        axes[1].plot(
            analysis[economy]["ad_curve"], prices, color=color, label=f"AD, {label}"
        )
        # Tangent at P: Y = Y(P) + (dY/dP)(P' - P), for P' within +-40% of P.
        near = np.array([0.6, 1.4]) * config.P
        axes[1].plot(
            Y0 + slope * (near - config.P),
            near,
            color=color,
            ls="--",
            lw=1,
            label=f"tangent, dY/dP = {slope:.2f}",
        )
        axes[1].scatter([Y0], [config.P], color=color, zorder=3, s=20)
    axes[1].set_xlabel("output Y")
    axes[1].set_ylabel("price level P")
    axes[1].set_title("aggregate demand and its slope by the IFT")
    axes[1].legend(fontsize=7)
    return figure


def _slopes(result, closed_form) -> dict:
    return {
        "ad_slope_ift": float(result["ad_slope_ift"]),
        "ad_slope_closed_form": float(closed_form),
        "ad_slope_finite_difference": float(result["ad_slope_finite_difference"]),
    }


def _run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    linear, semilog = _linear_model(config), _semilog_model(config)
    theta = jnp.asarray([config.G, config.T, config.M, config.P], dtype=float)
    analysis = _analysis(config, linear, semilog, theta)
    lin, semi = analysis["linear"], analysis["semilog"]
    parameters = dict(
        c0=config.c0,
        c=config.c,
        i0=config.i0,
        b=config.b,
        k=config.k,
        h=config.h,
        G=config.G,
        T=config.T,
        M=config.M,
        P=config.P,
    )
    x_closed, dx_closed = jax.device_get(linear_closed_form(**parameters))
    b, c, eta, P = config.b, config.c, config.semilog_eta, config.P
    Y_semi = float(semi["x"][0])
    slopes = {
        "linear": _slopes(lin, dx_closed[0, ISLM_PARAMETERS.index("P")]),
        "semilog": _slopes(semi, -b * Y_semi / (P * (b + (1 - c) * eta * Y_semi))),
    }
    shifts = {"linear": _shifts(lin, config), "semilog": _shifts(semi, config)}
    sweep_error = _random_economies(config)
    x_lin, dx_lin, dx_semi = lin["x"], lin["dx"], semi["dx"]
    linear_slopes, semilog_slopes = slopes["linear"], slopes["semilog"]

    # Report.
    ift, closed, fd = (
        linear_slopes[key]
        for key in (
            "ad_slope_ift",
            "ad_slope_closed_form",
            "ad_slope_finite_difference",
        )
    )
    workdir.check(
        "equilibrium (Y, r)",
        [float(x_lin[0]), float(x_lin[1])],
        target=f"closed form ({float(x_closed[0]):.6g}, {float(x_closed[1]):.6g})",
        source=MANKIW,
        passed=bool(np.allclose(x_lin, x_closed, rtol=EQUILIBRIUM_RTOL)),
    )
    workdir.check(
        "dY/dP by IFT (jax.grad through solver)",
        ift,
        target=f"-(b/D) M/P^2 = {closed:.6g}",
        source=MANKIW,
        passed=abs(ift - closed) <= CLOSED_FORM_RTOL * abs(closed),
    )
    workdir.check(
        "dY/dP by finite differences",
        fd,
        target=f"IFT within {FD_RTOL:g} relative",
        source=SOURCE,
        passed=abs(fd - ift) <= FD_RTOL * abs(ift),
    )
    matrix_error = _relative_error(dx_lin, dx_closed)
    workdir.check(
        "dx*/dtheta vs Cramer's rule (max rel. error)",
        matrix_error,
        target=f"<= {CLOSED_FORM_RTOL:g}",
        source=SOURCE,
        passed=matrix_error <= CLOSED_FORM_RTOL,
    )
    for name, shift in shifts["linear"].items():
        predicted = f"({shift['Y_predicted']:.6g}, {shift['r_predicted']:.6g})"
        workdir.check(
            f"equilibrium after {name} + {shift['delta']:g}",
            [shift["Y"], shift["r"]],
            target=f"x* + (dx*/dtheta) delta = {predicted}",
            source=MANKIW,
            passed=bool(
                np.allclose(
                    [shift["Y"], shift["r"]],
                    [shift["Y_predicted"], shift["r_predicted"]],
                    rtol=EQUILIBRIUM_RTOL,
                )
            ),
        )
    s_ift, s_closed, s_fd = (
        semilog_slopes[key]
        for key in (
            "ad_slope_ift",
            "ad_slope_closed_form",
            "ad_slope_finite_difference",
        )
    )
    workdir.check(
        "semi-log: dY/dP by IFT",
        s_ift,
        target="-bY / (P (b + (1-c) eta Y))",
        source="derived by Cramer's rule",
        passed=abs(s_ift - s_closed) <= CLOSED_FORM_RTOL * abs(s_closed),
    )
    workdir.check(
        "semi-log: dY/dP by finite differences",
        s_fd,
        target=f"IFT within {FD_RTOL:g} relative",
        source=SOURCE,
        passed=abs(s_fd - s_ift) <= FD_RTOL * abs(s_ift),
    )
    workdir.check(
        f"{config.num_economies} random economies: max rel. gap IFT vs closed form",
        sweep_error,
        target=f"<= {CLOSED_FORM_RTOL:g}",
        source=SOURCE,
        passed=sweep_error <= CLOSED_FORM_RTOL,
    )

    rows = [
        "| derivative | IFT (linear) | Cramer's rule | IFT (semi-log) |",
        "|---|---|---|---|",
    ]
    for i, variable in enumerate(ISLM_VARIABLES):
        for j, parameter in enumerate(ISLM_PARAMETERS):
            rows.append(
                f"| d{variable}/d{parameter} | {float(dx_lin[i, j]):.6g} | "
                f"{float(dx_closed[i, j]):.6g} | {float(dx_semi[i, j]):.6g} |"
            )
    workdir.note(
        "Comparative statics at the baseline equilibrium, "
        "dx*/dtheta = -(dF/dx)^-1 dF/dtheta:\n\n" + "\n".join(rows)
    )
    semi_shifts = shifts["semilog"]
    workdir.note(
        "Semi-log economy: the first-order prediction of a shift misses by a "
        "second-order term: G + {:g} gives Y = {:.4f} (predicted {:.4f}); M + {:g} "
        "gives Y = {:.4f} (predicted {:.4f}).".format(
            config.delta_G,
            semi_shifts["G"]["Y"],
            semi_shifts["G"]["Y_predicted"],
            config.delta_M,
            semi_shifts["M"]["Y"],
            semi_shifts["M"]["Y_predicted"],
        )
    )
    figure = _figure(config, analysis, slopes)
    workdir.save_figure(
        figure,
        "islm_ad",
        caption="Left: IS and LM curves, shifted by "
        "G and M, and the semi-log LM curve. Right: aggregate demand Y(P) "
        "with its tangent at P, slope from the implicit function theorem.",
    )

    return {
        "equilibrium": {"Y": float(x_lin[0]), "r": float(x_lin[1])},
        "ad_slope_ift": ift,
        "ad_slope_closed_form": closed,
        "ad_slope_finite_difference": fd,
        "ad_slope_units": "dY/dP at the baseline P",
        "ad_slope_dP_dY": 1.0 / ift,
        "comparative_statics": {
            f"d{v}/d{p}": float(dx_lin[i, j])
            for i, v in enumerate(ISLM_VARIABLES)
            for j, p in enumerate(ISLM_PARAMETERS)
        },
        "shifts": shifts,
        "semilog": {
            "equilibrium": {"Y": float(semi["x"][0]), "r": float(semi["x"][1])},
            **semilog_slopes,
        },
        "random_economies": {
            "count": config.num_economies,
            "max_rel_error_ift_vs_closed_form": sweep_error,
        },
    }

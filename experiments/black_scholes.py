"""Black-Scholes: greeks by autodiff, and prices through the heat equation.

The change of variables S = K e^x, t = T - 2 tau / sigma^2, V = K exp(-(k - 1) x / 2 -
(k + 1)^2 tau / 4) u(x, tau), k = 2 r / sigma^2, carries the Black-Scholes PDE to the
heat equation u_tau = u_xx (the chain rule applied to each derivative). What is
measured:

1. The textbook option (S = K = 100, r = 5%, sigma = 20%, T = 1): closed-form call and
   put (10.4506, 5.5735) and their prices by Crank-Nicolson on the heat equation,
   also over a grid of strikes.
2. The heat-equation price error against the grid size (second order).
3. Residuals, with JAX derivatives, of the Black-Scholes PDE and of the transformed
   heat equation evaluated on the closed-form price.
4. The greeks (delta, gamma, vega, theta per year, rho) by autodiff against their
   closed forms and central finite differences.
5. Figures: u(x, tau) as the heat equation diffuses the payoff, the convergence plot,
   and the greeks.
"""

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir
from chainlab.science.finance import (
    GREEKS,
    KINDS,
    black_scholes,
    greeks,
    greeks_closed_form,
    greeks_finite_differences,
    heat_residual,
    heat_transform,
    pde_residual,
    price_via_heat_equation,
    solve_heat_equation,
)

HULL = "Hull, Options, Futures, and Other Derivatives"
WILMOTT = "Wilmott, Howison & Dewynne 1995, ch. 5 (the heat-equation transform)"
CRANK_NICOLSON = "Crank-Nicolson, O(dx^2 + dtau^2) (Wilmott et al. 1995, ch. 8)"
DIFFERENCES = "central differences, truncation O(h^2)"
PUBLISHED = {"call": 10.4506, "put": 5.5735}
# Convergence order of Crank-Nicolson (with Rannacher start-up): within 0.2 of 2.
ORDER_TOL = 0.2
# Autodiff and the closed forms are both exact up to float64 rounding.
GREEK_RTOL = 1e-12
# Central differences, relative step 1e-4: truncation ~1e-9 relative, rounding (gamma's
# second difference) ~4 eps V / h^2 ~ 1e-10.
GREEK_FD_RTOL = 1e-6
# PDE residuals of O(1-100) prices from second derivatives in float64.
RESIDUAL_ATOL = 1e-9
SOURCES = ("closed_form", "heat_equation")
UNITS = {
    "delta": "per unit of S",
    "gamma": "per unit of S^2",
    "vega": "per 1.00 of sigma",
    "theta": "per year",
    "rho": "per 1.00 of r",
}


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(config.x64):
        return _run(config, workdir)


def _heat_price(config, S, K, kind, num_x=None, num_tau=None):
    grid = dict(
        num_x=num_x or config.num_x,
        num_tau=num_tau or config.num_tau,
        half_width=config.half_width,
        rannacher_steps=config.rannacher_steps,
    )
    return price_via_heat_equation(
        S, K, config.T, config.r, config.sigma, kind=kind, **grid
    )


def _convergence(config) -> dict:
    """Largest heat-equation error over (call, put) at S = K, per grid size."""
    S, K, T, r, sigma = (config[name] for name in ("S", "K", "T", "r", "sigma"))
    exact = {kind: black_scholes(S, K, T, r, sigma, kind=kind) for kind in KINDS}

    def error(num_x, kind):
        num_tau = max(num_x // config.tau_ratio, 1)
        return abs(float(_heat_price(config, S, K, kind, num_x, num_tau) - exact[kind]))

    errors = [max(error(n, kind) for kind in KINDS) for n in config.convergence_num_x]
    slope = np.polyfit(np.log(config.convergence_num_x), np.log(errors), 1)[0]
    return {
        "num_x": list(config.convergence_num_x),
        "max_abs_error": errors,
        "order": float(-slope),
    }


def _residuals(config) -> dict:
    """Max |residual| of the Black-Scholes PDE and of the heat equation, closed form."""
    K, T, r, sigma = config.K, config.T, config.r, config.sigma
    n = config.residual_points
    S, t = jnp.meshgrid(jnp.linspace(0.5 * K, 1.5 * K, n), jnp.linspace(0, 0.9 * T, n))
    tau_max = sigma**2 * T / 2
    x, tau = jnp.meshgrid(
        jnp.linspace(-1.0, 1.0, n), jnp.linspace(0.05 * tau_max, tau_max, n)
    )

    @partial(jax.jit, static_argnames="kind")
    def worst(S, t, x, tau, kind):
        def V(S, t):
            return black_scholes(S, K, T - t, r, sigma, kind=kind)

        u = heat_transform(V, K=K, T=T, r=r, sigma=sigma)
        return {
            "black_scholes_pde": jnp.max(
                jnp.abs(pde_residual(V, S, t, r=r, sigma=sigma))
            ),
            "heat_equation": jnp.max(jnp.abs(heat_residual(u, x, tau))),
        }

    return {
        kind: {name: float(v) for name, v in worst(S, t, x, tau, kind).items()}
        for kind in KINDS
    }


def _greek_errors(config):
    """Normwise relative errors of autodiff greeks vs closed form and vs FD.

    Per greek, max |autodiff - reference| / max |reference| over the grid of spots and
    expiries (normwise, since theta and gamma pass through or near zero).
    """
    K, r, sigma, h = config.K, config.r, config.sigma, config.fd_step
    spots = jnp.linspace(0.7 * K, 1.3 * K, config.greek_spots)
    S, T = jnp.meshgrid(spots, jnp.asarray(config.greek_expiries))
    closed_errors, fd_errors = {}, {}
    for kind in KINDS:
        auto = greeks(S, K, T, r, sigma, kind=kind)
        closed = greeks_closed_form(S, K, T, r, sigma, kind=kind)
        finite = greeks_finite_differences(S, K, T, r, sigma, kind=kind, step=h)
        for name in GREEKS:
            scale = jnp.max(jnp.abs(closed[name]))
            gap = jnp.abs(auto[name] - closed[name])
            closed_errors[kind, name] = float(jnp.max(gap) / scale)
            fd_errors[kind, name] = float(
                jnp.max(jnp.abs(auto[name] - finite[name])) / scale
            )
    return closed_errors, fd_errors


def _figure_heat(config, convergence):
    """u(x, tau) of the call and the put as the payoff diffuses; the convergence."""
    K, T, r, sigma = config.K, config.T, config.r, config.sigma
    k, tau_max = 2 * r / sigma**2, sigma**2 * T / 2
    width = config.half_width * sigma * T**0.5
    grid = dict(
        num_x=config.num_x,
        num_tau=config.num_tau,
        rannacher_steps=config.rannacher_steps,
    )
    figure, axes = new_figure(1, 3, size=(16.0, 4.0))
    for ax, kind in zip(axes[:2], KINDS, strict=True):
        x, tau, u = solve_heat_equation(
            k, tau_max, kind=kind, x_min=-width, x_max=width, **grid
        )
        for fraction in (0.0, 0.02, 0.1, 0.3, 1.0):
            n = round(fraction * config.num_tau)
            ax.plot(x, u[n], lw=1, label=f"tau = {float(tau[n]):.4f}")

        def V(S, t, kind=kind):
            return black_scholes(S, K, T - t, r, sigma, kind=kind)

        exact = heat_transform(V, K=K, T=T, r=r, sigma=sigma)(x, tau_max)
        ax.plot(x[::25], exact[::25], "k.", ms=3, label="closed form at tau_max")
        ax.set(xlim=(-1.0, 1.0), xlabel="x = ln(S / K)", ylabel="u(x, tau)")
        ax.set_title(f"{kind}: the payoff diffusing, u_tau = u_xx")
    n = np.asarray(convergence["num_x"], float)
    errors = np.asarray(convergence["max_abs_error"])
    axes[2].loglog(n, errors, "o-", label="max |heat - closed form| (call, put)")
    axes[2].loglog(n, errors[0] * (n / n[0]) ** -2.0, "k--", lw=0.8, label="slope -2")
    axes[2].set(
        xlabel=f"num_x (num_tau = num_x / {config.tau_ratio})", ylabel="price error"
    )
    axes[2].set_title(f"Crank-Nicolson convergence, order {convergence['order']:.2f}")
    for ax in axes:
        ax.legend(fontsize=7)
    return figure


def _figure_greeks(config):
    """Autodiff greeks on a fine grid of spots (lines), closed forms on the test grid
    (dots), at the longest expiry."""
    K, T, r, sigma = config.K, config.greek_expiries[-1], config.r, config.sigma
    fine = jnp.linspace(0.7 * K, 1.3 * K, 200)
    spots = jnp.linspace(0.7 * K, 1.3 * K, config.greek_spots)
    figure, axes = new_figure(1, 5, size=(16.0, 3.4))
    for kind, color in (("call", "tab:blue"), ("put", "tab:orange")):
        auto = greeks(fine, K, T, r, sigma, kind=kind)
        closed = greeks_closed_form(spots, K, T, r, sigma, kind=kind)
        for ax, name in zip(axes, GREEKS, strict=True):
            ax.plot(fine, auto[name], color=color, lw=1, label=f"{kind}, autodiff")
            ax.plot(spots, closed[name], ".", color=color, label=f"{kind}, closed form")
            ax.set(title=name, xlabel="spot S")
    axes[0].legend(fontsize=6)
    return figure


def _run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    S, K, T, r, sigma = config.S, config.K, config.T, config.r, config.sigma
    closed = {
        kind: float(black_scholes(S, K, T, r, sigma, kind=kind)) for kind in KINDS
    }
    heat = {kind: float(_heat_price(config, S, K, kind)) for kind in KINDS}
    strikes = jnp.asarray(config.strikes)
    by_strike = {}
    for kind in KINDS:
        exact = black_scholes(S, strikes, T, r, sigma, kind=kind)
        numeric = _heat_price(config, S, strikes, kind)
        by_strike[kind] = {
            "closed_form": np.asarray(exact).tolist(),
            "heat_equation": np.asarray(numeric).tolist(),
        }
    convergence = _convergence(config)
    residuals = _residuals(config)
    closed_errors, fd_errors = _greek_errors(config)
    max_greek = max(closed_errors.values())
    max_greek_fd = max(fd_errors.values())

    for kind in KINDS:
        name = f"{kind}, closed form, rounded to 4 decimals"
        rounded = round(closed[kind], 4)
        workdir.check(name, rounded, equals=PUBLISHED[kind], source=HULL + ", ch. 15")
        name = f"{kind}, heat equation ({config.num_x} x {config.num_tau})"
        atol = config.heat_price_atol
        check = dict(close_to=closed[kind], atol=atol, label="closed form")
        workdir.check(name, heat[kind], **check, source=CRANK_NICOLSON)
    order = convergence["order"]
    name = "heat-equation convergence order"
    workdir.check(name, order, close_to=2.0, atol=ORDER_TOL, source=CRANK_NICOLSON)
    worst_heat = max(r["heat_equation"] for r in residuals.values())
    worst_pde = max(r["black_scholes_pde"] for r in residuals.values())
    name = "max abs(u_tau - u_xx), transformed closed form"
    workdir.check(name, worst_heat, at_most=RESIDUAL_ATOL, source=WILMOTT)
    name = "max abs(Black-Scholes PDE residual), closed form"
    workdir.check(name, worst_pde, at_most=RESIDUAL_ATOL, source="Black & Scholes 1973")
    name = "max greek rel. error, autodiff vs closed form"
    workdir.check(name, max_greek, at_most=GREEK_RTOL, source=HULL + ", ch. 19")
    name = "max greek rel. error, autodiff vs finite differences"
    workdir.check(name, max_greek_fd, at_most=GREEK_FD_RTOL, source=DIFFERENCES)

    header = ["K", "call, closed", "call, heat", "put, closed", "put, heat"]
    rows = [
        [strike, *(by_strike[kind][source][i] for kind in KINDS for source in SOURCES)]
        for i, strike in enumerate(config.strikes)
    ]
    workdir.note(
        f"Prices over strikes (S = {S:g}, T = {T:g}, r = {r:g}, "
        f"sigma = {sigma:g}):\n\n" + markdown_table(header, rows)
    )
    header = ["greek", "units", "call: vs closed", "call: vs FD", "put: vs closed"]
    pairs = [(kind, errors) for kind in KINDS for errors in (closed_errors, fd_errors)]
    rows = [[n, UNITS[n], *(errors[kind, n] for kind, errors in pairs)] for n in GREEKS]
    workdir.note(
        "Normwise relative errors of the autodiff greeks, max |autodiff - "
        "reference| / max |reference| over the grid of spots and expiries:\n\n"
        + markdown_table([*header, "put: vs FD"], rows)
    )
    workdir.save_figure(
        _figure_heat(config, convergence),
        "heat_equation",
        caption="The transformed payoff u(x, 0) diffusing under u_tau = u_xx "
        "(Crank-Nicolson; dots: the transformed closed form at the final heat time), "
        "and the heat-equation price error against grid size.",
    )
    workdir.save_figure(
        _figure_greeks(config),
        "greeks",
        caption=f"Greeks at T = {config.greek_expiries[-1]:g}: autodiff "
        "(lines) and closed forms (dots).",
    )

    return {
        "price_closed_form": closed,
        "price_heat_equation": heat,
        "heat_equation_abs_error": {k: abs(heat[k] - closed[k]) for k in KINDS},
        "prices_by_strike": {"strikes": list(config.strikes), **by_strike},
        "convergence": convergence,
        "pde_residual_max_abs": residuals,
        "max_greek_rel_error": max_greek,
        "max_greek_fd_rel_error": max_greek_fd,
        "greek_rel_error": {
            f"{kind}.{name}": v for (kind, name), v in closed_errors.items()
        },
    }

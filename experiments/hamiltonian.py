"""Hamiltonian energy: dH/dt by the chain rule, and energy drift of four integrators.

Along Hamilton's flow q' = dH/dp, p' = -dH/dq the chain rule gives dH/dt = dH/dq q' +
dH/dp p' + dH/dt|explicit = dH/dt|explicit, so a time-independent H is conserved. What
is measured, with ``chainlab.science.mechanics``, ``systems`` and
``hamiltonian_network``:

1. Energy error |H(t) - H(0)| / |H(0)| over long runs (``steps`` steps) of a harmonic
   oscillator, a pendulum and a Kepler orbit, for explicit Euler, symplectic Euler,
   leapfrog (Stormer-Verlet) and RK4: symplectic methods stay bounded, Euler grows.
2. The order of leapfrog's energy error (halving dt divides it by 4).
3. A time-dependent Hamiltonian (parametric oscillator): dH/dt along the numerical
   trajectory (central differences of H(q_n, p_n, t_n)) against the chain-rule rate
   ``energy_rate`` and the explicit dH/dt.
4. A Hamiltonian neural network (Greydanus et al. 2019) against a plain network on
   noisy ideal-spring data: the energy error of their rollouts.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab.models import MLP
from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir
from chainlab.science import systems
from chainlab.science.hamiltonian_network import field_loss, hamiltonian_field, rollout
from chainlab.science.mechanics import energy_rate, integrate, relative_energy_error
from chainlab.training import fit

HAIRER = "Hairer, Lubich & Wanner, Geometric Numerical Integration, ch. I, IX"
CHAIN_RULE = "chain rule: dH/dt = dH/dt|explicit (Goldstein, Classical Mechanics, 8.2)"
GREYDANUS = "Greydanus, Dzamba & Yosinski 2019, Table 1"
SYSTEMS = {
    "oscillator": systems.oscillator,
    "pendulum": systems.pendulum,
    "kepler": systems.kepler,
}
# Leapfrog's energy error is O(dt^2): its estimated order within 0.2 of 2.
ORDER_TOL = 0.2
# Bounded: the worst error in the second half of a run is at most this times the
# worst in the first half (a secular drift grows by ~2x; Euler's far more).
BOUNDED_RATIO = 1.5
# Central differences of H along an RK4 trajectory with dt = 1e-3: truncation
# dt^2 / 6 |d^3H/dt^3| ~ 1e-7, plus RK4's global error ~1e-12.
TRAJECTORY_RATE_ATOL = 1e-5
# The chain rule against the explicit dH/dt: dH/dq q' + dH/dp p' cancel to rounding.
CHAIN_RULE_ATOL = 1e-12


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(config.x64):
        return _run(config, workdir)


def _initial_states(config) -> dict:
    zero = jnp.asarray(0.0)
    return {
        "oscillator": (jnp.asarray(1.0), zero, config.dt_oscillator),
        "pendulum": (jnp.asarray(config.pendulum_q0), zero, config.dt_pendulum),
        "kepler": (*systems.kepler_pericentre(config.kepler_e), config.dt_kepler),
    }


def _energy_error(H, q0, p0, dt, steps, method, iterations):
    """Relative energy error |H_n - H_0| / |H_0| along a run, and its states."""
    qs, ps = integrate(
        H, q0, p0, dt=dt, steps=steps, method=method, fixed_point_iterations=iterations
    )
    return tuple(map(np.asarray, (relative_energy_error(H, qs, ps), qs, ps)))


def _long_runs(config) -> dict:
    """Per (system, method): the energy error along a long run and its states; plus
    leapfrog's order, log2 of its max error at dt over that at dt / 2."""
    runs, orders, iterations = {}, {}, config.fixed_point_iterations
    for system, (q0, p0, dt) in _initial_states(config).items():
        H = SYSTEMS[system]
        for method in config.methods:
            error, qs, ps = _energy_error(
                H, q0, p0, dt, config.steps, method, iterations
            )
            runs[system, method] = {"error": error, "qs": qs, "ps": ps, "dt": dt}
        if "leapfrog" in config.methods:
            coarse, fine = (
                _energy_error(
                    H, q0, p0, dt / s, s * config.order_steps, "leapfrog", iterations
                )[0].max()
                for s in (1, 2)
            )
            orders[system] = float(np.log2(coarse / fine))
    return runs, orders


def _driven(config):
    """Parametric oscillator: its energy rate three ways along an RK4 trajectory."""
    w0, eps, omega = config.driven_w0, config.driven_eps, config.driven_omega
    H = systems.parametric_oscillator(w0=w0, eps=eps, omega=omega)

    def explicit(q, p, t):  # dH/dt|explicit = w w' q^2, by hand
        w = w0 * (1.0 + eps * jnp.cos(omega * t))
        return -w * w0 * eps * omega * jnp.sin(omega * t) * q**2

    dt, steps = config.driven_dt, config.driven_steps
    qs, ps = integrate(H, 1.0, 0.0, dt=dt, steps=steps, method="rk4")
    ts = dt * jnp.arange(steps + 1)
    energies = jax.vmap(H)(qs, ps, ts)
    rates = jax.vmap(lambda q, p, t: energy_rate(H, q, p, t))(qs, ps, ts)
    differences = (energies[2:] - energies[:-2]) / (2 * dt)
    explicit = jax.vmap(explicit)(qs, ps, ts)
    rates = dict(chain_rule=rates, explicit=explicit, along_trajectory=differences)
    return jax.device_get({"t": ts, **rates})


def _hamiltonian_network(config, workdir: Workdir) -> dict:
    """A plain network (q, p) -> (q', p') and a Hamiltonian one (q, p) -> H_theta,
    trained on the same spring data by ``fit``, rolled out by RK4 from the test
    states and scored by the mean squared error of the true energy along the rollout."""
    hnn = config.hnn
    rng = np.random.default_rng(config.seed)
    states, derivatives, starts = systems.spring_observations(rng, **hnn.data)
    half = hnn.data.trajectories // 2
    train = (states[:half].reshape(-1, 2), derivatives[:half].reshape(-1, 2))
    test = (states[half:].reshape(-1, 2), derivatives[half:].reshape(-1, 2))
    starts = jnp.asarray(starts[half:])
    true_energy = jnp.sum(starts**2, axis=-1)  # the spring's H = q^2 + p^2
    optimizer = optax.chain(
        optax.add_decayed_weights(hnn.weight_decay), optax.adam(hnn.learning_rate)
    )
    results = {"true_energy": np.asarray(true_energy)}
    for name, outputs in (("baseline", 2), ("hnn", 1)):
        model = MLP((hnn.hidden, hnn.hidden, outputs))
        field = model.apply if name == "baseline" else hamiltonian_field(model.apply)
        loss_fn = field_loss(field)
        fitted = fit(
            loss_fn,
            model.init(jax.random.key(config.seed), train[0][:1]),
            optimizer,
            train,
            steps=hnn.steps,
            batch_size=train[0].shape[0],
            seed=config.seed,
            log_every=max(hnn.steps // 20, 1),
            **workdir.fit_options,
            name=f"spring_{name}",
        ).params
        paths = rollout(
            field, fitted, starts, dt=hnn.rollout_dt, steps=hnn.rollout_steps
        )
        energy = jnp.sum(paths**2, axis=-1)
        results[name] = {
            "train_loss": float(loss_fn(fitted, train, None)),
            "test_loss": float(loss_fn(fitted, test, None)),
            "energy_mse": float(jnp.mean((energy - true_energy[:, None]) ** 2)),
            "trajectories": np.asarray(paths),
        }
    return results


def _figure_energy(config, runs, workdir):
    """Energy error against time, and phase portraits."""
    figure, axes = new_figure(2, 3, size=(14.0, 8.4))
    window = min(config.steps + 1, 3000)  # the first steps, so orbits stay readable
    index = np.unique(np.linspace(1, config.steps, config.plot_points).astype(int))
    for (top, bottom), system in zip(axes.T, SYSTEMS, strict=True):
        for method in config.methods:
            run = runs[system, method]
            # Floor at 1e-17 so exact zeros (RK4's first steps) stay on the log axis.
            error = np.maximum(run["error"][index], 1e-17)
            top.semilogy(index * run["dt"], error, label=method, lw=1)
            if method in ("euler", "leapfrog"):
                qs, ps = run["qs"][:window], run["ps"][:window]
                xy = qs.T if system == "kepler" else (qs, ps)  # Kepler: the orbit
                style = ":" if method == "euler" else "-"
                bottom.plot(*xy, lw=0.8, ls=style, label=method)
        top.set(title=f"{system}: |H(t) - H(0)| / |H(0)|", xlabel="time")
        bottom.set(title=f"{system}, first {window - 1} steps")
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
    axes[1, 2].set_aspect("equal")
    workdir.save_figure(
        figure,
        "energy_error",
        caption="Top: relative energy error (log scale), symplectic methods bounded, "
        "explicit Euler growing. Bottom: phase portraits (Kepler: the orbit), leapfrog "
        "on the energy surface, Euler spiralling outwards.",
    )


def _figure_rates(driven, networks, workdir):
    """The driven system's energy rate, and the spring networks' rollouts."""
    figure, axes = new_figure(1, 3, size=(15.0, 4.0))
    t = driven["t"]
    differences = driven["along_trajectory"]
    axes[0].plot(t[1:-1], differences, lw=2.5, color="0.75", label="differences")
    axes[0].plot(t, driven["chain_rule"], lw=1, label="chain rule (energy_rate)")
    axes[0].plot(t, driven["explicit"], lw=1, ls="--", label="explicit dH/dt")
    axes[0].set(xlabel="time", title="dH/dt of the parametric oscillator")
    for name, color in (("baseline", "tab:red"), ("hnn", "tab:blue")):
        if name not in networks:
            continue
        paths = networks[name]["trajectories"]
        axes[1].plot(paths[0, :, 0], paths[0, :, 1], color=color, lw=0.8, label=name)
        error = (np.sum(paths**2, axis=-1) - networks["true_energy"][:, None]) ** 2
        axes[2].semilogy(error.mean(axis=0), color=color, label=name)
    axes[1].set(aspect="equal", title="spring rollout from a test state (q, p)")
    axes[2].set(xlabel="rollout step", title="spring: energy MSE over test states")
    for ax in axes:
        ax.legend(fontsize=7)
    workdir.save_figure(
        figure,
        "energy_rate",
        caption="Left: dH/dt along the numerical trajectory (central differences) "
        "equals the chain-rule rate, which equals the explicit dH/dt. Middle, right: "
        "spring rollouts, the Hamiltonian network on its energy level, the plain "
        "network drifting.",
    )


def _check_integrators(config, runs, orders, workdir) -> tuple[dict, dict]:
    drift, growth, half = {}, {}, config.steps // 2
    for (system, method), run in runs.items():
        error = run["error"]
        drift.setdefault(system, {})[method] = float(error.max())
        ratio = float(error[half:].max() / error[1 : half + 1].max())
        growth.setdefault(system, {})[method] = ratio
        name = f"{system}: {method} energy error, 2nd half / 1st half"
        if method == "leapfrog":
            workdir.check(name, ratio, at_most=BOUNDED_RATIO, source=HAIRER)
            order = f"{system}: leapfrog energy error order (dt vs dt/2)"
            workdir.check(
                order, orders[system], close_to=2, atol=ORDER_TOL, source=HAIRER
            )
        elif method == "euler":
            workdir.check(name, ratio, above=1.0, label="grows", source=HAIRER)
    worst = {m: max(drift[s][m] for s in SYSTEMS) for m in config.methods}
    for method, value in worst.items():
        name = f"energy_drift.{method} (max rel. energy error, all systems)"
        if method in ("symplectic_euler", "leapfrog") and "euler" in worst:
            workdir.check(
                name, value, below=worst["euler"], label="Euler's", source=HAIRER
            )
        else:
            text = "grows without bound" if method == "euler" else "small, drifting"
            workdir.check(name, value, info=text, source=HAIRER)
    return worst, drift, growth


def _run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    runs, orders = _long_runs(config)
    worst, drift, growth = _check_integrators(config, runs, orders, workdir)
    driven = _driven(config)
    gap = driven["along_trajectory"] - driven["chain_rule"][1:-1]
    trajectory_error = float(np.max(np.abs(gap)))
    chain_error = float(np.max(np.abs(driven["chain_rule"] - driven["explicit"])))
    name = "energy_rate_max_abs_error: abs(dH/dt along trajectory - chain rule)"
    workdir.check(
        name, trajectory_error, at_most=TRAJECTORY_RATE_ATOL, source=CHAIN_RULE
    )
    name = "parametric oscillator: max abs(chain rule - explicit dH/dt)"
    workdir.check(name, chain_error, at_most=CHAIN_RULE_ATOL, source=CHAIN_RULE)
    rows = [[system, *(drift[system][m] for m in config.methods)] for system in SYSTEMS]
    table = markdown_table(["system", *config.methods], rows)
    workdir.note(f"Maximum relative energy error over {config.steps} steps:\n\n{table}")
    _figure_energy(config, runs, workdir)

    results, networks = {}, {}
    if config.hnn.enabled:
        networks = _hamiltonian_network(config, workdir)
        hnn_mse, base_mse = (networks[n]["energy_mse"] for n in ("hnn", "baseline"))
        name = "spring: energy MSE of the rollout, Hamiltonian network"
        label = "the plain network's (paper: 3.8e-4)"
        workdir.check(name, hnn_mse, below=base_mse, label=label, source=GREYDANUS)
        name = "spring: energy MSE of the rollout, plain network"
        workdir.check(name, base_mse, info="1.7e-1 in the paper", source=GREYDANUS)
        keys = ("train_loss", "test_loss", "energy_mse")
        scores = {n: {k: networks[n][k] for k in keys} for n in ("baseline", "hnn")}
        rows = [[name, *values.values()] for name, values in scores.items()]
        workdir.note(
            f"Ideal spring: {config.hnn.steps} Adam steps, rollouts of "
            f"{config.hnn.rollout_steps} RK4 steps from the test states:\n\n"
            + markdown_table(["network", "train loss", "test loss", "energy MSE"], rows)
        )
        results["hamiltonian_network"] = scores
    _figure_rates(driven, networks, workdir)

    return results | {
        "energy_drift": worst,
        "energy_drift_by_system": drift,
        "energy_growth_second_half_over_first": growth,
        "leapfrog_energy_order": orders,
        "energy_rate_max_abs_error": trajectory_error,
        "energy_rate_chain_rule_vs_explicit_max_abs_error": chain_error,
        "steps": config.steps,
    }

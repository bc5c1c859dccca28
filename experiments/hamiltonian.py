"""Hamiltonian energy: dH/dt by the chain rule, and energy drift of four integrators.

Along Hamilton's flow q' = dH/dp, p' = -dH/dq the chain rule gives dH/dt = dH/dq q' +
dH/dp p' + dH/dt|explicit = dH/dt|explicit, so a time-independent H is conserved. What
is measured:

1. Energy error |H(t) - H(0)| / |H(0)| over long runs (``steps`` steps) of a harmonic
   oscillator, a pendulum and a Kepler orbit, for explicit Euler, symplectic Euler,
   leapfrog (Stormer-Verlet) and RK4 (``chainlab.science.mechanics.integrate``):
   symplectic methods stay bounded, Euler grows.
2. The order of leapfrog's energy error (halving dt divides it by 4).
3. A time-dependent Hamiltonian (parametric oscillator): dH/dt along the numerical
   trajectory (central differences of H(q_n, p_n, t_n)) against the chain-rule rate
   ``energy_rate`` and the explicit dH/dt.
4. Going further, a Hamiltonian neural network (Greydanus et al. 2019) against a plain
   network on noisy ideal-spring data: the energy error of their rollouts.
5. Figures: energy error against time (log scale), phase portraits, the energy rate
   of the driven system, and the spring rollouts.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab.models import MLP
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.science.mechanics import energy_rate, integrate, vector_field
from chainlab.training import fit

SOURCE = "issue 7"
HAIRER = "Hairer, Lubich & Wanner, Geometric Numerical Integration, ch. I, IX"
GREYDANUS = "Greydanus, Dzamba & Yosinski 2019, Table 1"
SYSTEMS = ("oscillator", "pendulum", "kepler")
# Leapfrog's energy error is O(dt^2): its estimated order within 0.2 of 2.
ORDER_TOL = 0.2
# Bounded: the worst error in the second half of a run is at most this times the
# worst in the first half (a secular drift grows by ~2x; Euler's far more).
BOUNDED_RATIO = 1.5
# Central differences of H along an RK4 trajectory with dt = 1e-3: truncation
# dt^2 / 6 |d^3H/dt^3| ~ 1e-7, plus RK4's global error ~1e-12.
TRAJECTORY_RATE_ATOL = 1e-5
# The chain rule against the explicit dH/dt: the two terms dH/dq q' + dH/dp p' cancel
# to rounding (float64).
CHAIN_RULE_ATOL = 1e-12


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(config.x64):
        return _run(config, workdir)


def oscillator(q, p, t):
    """Harmonic oscillator, unit mass and frequency: H = (p^2 + q^2) / 2."""
    return 0.5 * (p**2 + q**2)


def pendulum(q, p, t):
    """Mathematical pendulum, g / l = 1: H = p^2 / 2 - cos q."""
    return 0.5 * p**2 - jnp.cos(q)


def kepler(q, p, t):
    """Kepler problem, GM = 1: H = |p|^2 / 2 - 1 / |q|."""
    return 0.5 * jnp.sum(p**2) - 1.0 / jnp.linalg.norm(q)


def _initial_states(config) -> dict:
    e = config.kepler_e
    return {
        "oscillator": (jnp.asarray(1.0), jnp.asarray(0.0), config.dt_oscillator),
        "pendulum": (
            jnp.asarray(config.pendulum_q0),
            jnp.asarray(0.0),
            config.dt_pendulum,
        ),
        # Pericentre of an orbit with semi-major axis 1 (energy -1/2, period 2 pi).
        "kepler": (
            jnp.array([1.0 - e, 0.0]),
            jnp.array([0.0, ((1.0 + e) / (1.0 - e)) ** 0.5]),
            config.dt_kepler,
        ),
    }


HAMILTONIANS = {"oscillator": oscillator, "pendulum": pendulum, "kepler": kepler}


def _relative_energy_error(H, qs, ps):
    energies = jax.vmap(H, in_axes=(0, 0, None))(qs, ps, 0.0)
    return jnp.abs(energies - energies[0]) / jnp.abs(energies[0])


def _long_runs(config) -> dict:
    """Per system and method: the relative energy error along the run and the states."""
    runs = {}
    for system, (q0, p0, dt) in _initial_states(config).items():
        H = HAMILTONIANS[system]
        for method in config.methods:
            qs, ps = integrate(
                H,
                q0,
                p0,
                dt=dt,
                steps=config.steps,
                method=method,
                fixed_point_iterations=config.fixed_point_iterations,
            )
            runs[system, method] = {
                "error": np.asarray(_relative_energy_error(H, qs, ps)),
                "qs": np.asarray(qs),
                "ps": np.asarray(ps),
                "dt": dt,
            }
    return runs


def _leapfrog_order(config) -> dict:
    """log2 of the ratio of max energy errors at dt and dt / 2 over the same span."""
    orders = {}
    for system, (q0, p0, dt) in _initial_states(config).items():
        H = HAMILTONIANS[system]
        errors = []
        for scale in (1, 2):
            qs, ps = integrate(
                H,
                q0,
                p0,
                dt=dt / scale,
                steps=scale * config.order_steps,
                method="leapfrog",
                fixed_point_iterations=config.fixed_point_iterations,
            )
            errors.append(float(jnp.max(_relative_energy_error(H, qs, ps))))
        orders[system] = float(np.log2(errors[0] / errors[1]))
    return orders


def _driven(config):
    """Parametric oscillator: its energy rate three ways along an RK4 trajectory."""
    w0, eps, omega = config.driven_w0, config.driven_eps, config.driven_omega

    def H(q, p, t):
        w = w0 * (1.0 + eps * jnp.cos(omega * t))
        return 0.5 * p**2 + 0.5 * w**2 * q**2

    def explicit(q, p, t):  # dH/dt|explicit = w w' q^2, by hand
        w = w0 * (1.0 + eps * jnp.cos(omega * t))
        return -w * w0 * eps * omega * jnp.sin(omega * t) * q**2

    dt, steps = config.driven_dt, config.driven_steps
    qs, ps = integrate(H, 1.0, 0.0, dt=dt, steps=steps, method="rk4")
    ts = dt * jnp.arange(steps + 1)
    energies = jax.vmap(H)(qs, ps, ts)
    rates = jax.vmap(lambda q, p, t: energy_rate(H, q, p, t))(qs, ps, ts)
    along = (energies[2:] - energies[:-2]) / (2 * dt)  # central differences
    return {
        "t": np.asarray(ts),
        "energy": np.asarray(energies),
        "chain_rule": np.asarray(rates),
        "explicit": np.asarray(jax.vmap(explicit)(qs, ps, ts)),
        "along_trajectory": np.asarray(along),
    }


def _subsample(n: int, points: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))


def _figure_energy(config, runs):
    figure, axes = new_figure(1, 3, size=(14.0, 4.0))
    for ax, system in zip(axes, SYSTEMS, strict=True):
        for method in config.methods:
            run = runs[system, method]
            index = _subsample(len(run["error"]), config.plot_points)[1:]
            time = index * run["dt"]
            # Floor at 1e-17 so exact zeros (RK4's first steps) stay on the log axis.
            ax.semilogy(
                time, np.maximum(run["error"][index], 1e-17), label=method, lw=1
            )
        ax.set_title(f"{system} (dt = {runs[system, config.methods[0]]['dt']:g})")
        ax.set_xlabel("time")
        ax.set_ylabel("|H(t) - H(0)| / |H(0)|")
        ax.legend(fontsize=7)
    return figure


def _figure_phase(config, runs):
    figure, axes = new_figure(1, 3, size=(14.0, 4.2))
    window = min(config.steps + 1, 3000)  # the first steps, so orbits stay readable
    for method, style in (("euler", ":"), ("leapfrog", "-")):
        if method not in config.methods:
            continue
        for ax, system in zip(axes, SYSTEMS, strict=True):
            run = runs[system, method]
            if system == "kepler":
                ax.plot(
                    run["qs"][:window, 0],
                    run["qs"][:window, 1],
                    ls=style,
                    lw=0.8,
                    label=method,
                )
            else:
                ax.plot(
                    run["qs"][:window],
                    run["ps"][:window],
                    ls=style,
                    lw=0.8,
                    label=method,
                )
    # The pendulum's level sets (exact phase portrait) and its separatrix.
    q, p = np.meshgrid(np.linspace(-np.pi, np.pi, 200), np.linspace(-3, 3, 200))
    axes[1].contour(
        q, p, 0.5 * p**2 - np.cos(q), levels=12, colors="0.8", linewidths=0.6
    )
    axes[1].contour(
        q, p, 0.5 * p**2 - np.cos(q), levels=[1.0], colors="0.4", linewidths=0.8
    )
    axes[2].scatter([0.0], [0.0], color="k", s=12)
    titles = (
        "oscillator (q, p)",
        "pendulum (q, p), grey: level sets of H",
        f"Kepler orbit (x, y), e = {config.kepler_e:g}",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title + f", first {window - 1} steps")
        ax.legend(fontsize=7)
    axes[2].set_aspect("equal")
    return figure


def _figure_driven(driven):
    figure, axes = new_figure(1, 2, size=(11.0, 3.8))
    t = driven["t"]
    axes[0].plot(
        t[1:-1],
        driven["along_trajectory"],
        lw=2.5,
        color="0.75",
        label="d/dt H(q_n, p_n, t_n), central differences",
    )
    axes[0].plot(t, driven["chain_rule"], lw=1, label="chain rule (energy_rate)")
    axes[0].plot(t, driven["explicit"], lw=1, ls="--", label="explicit dH/dt")
    axes[0].set_xlabel("time")
    axes[0].set_title("dH/dt of the parametric oscillator")
    axes[0].legend(fontsize=7)
    axes[1].semilogy(
        t[1:-1],
        np.abs(driven["along_trajectory"] - driven["chain_rule"][1:-1]) + 1e-18,
        lw=0.8,
        label="|differences - chain rule|",
    )
    axes[1].semilogy(
        t,
        np.abs(driven["chain_rule"] - driven["explicit"]) + 1e-18,
        lw=0.8,
        label="|chain rule - explicit| (+1e-18)",
    )
    axes[1].set_xlabel("time")
    axes[1].set_title("absolute differences")
    axes[1].legend(fontsize=7)
    return figure


def spring(q, p, t):
    """The ideal spring of Greydanus et al. (2019): H = q^2 + p^2 (frequency 2)."""
    return q**2 + p**2


def _spring_data(hnn, rng):
    """Noisy states and exact time derivatives of random spring trajectories.

    Each trajectory starts at radius U(0.1, 1) in a random direction and is observed
    ``points`` times on [0, t_max]; the states get N(0, noise^2) noise, the targets are
    the exact (q', p') = (2p, -2q) of the clean states (Greydanus et al. 2019, sec. 3).
    """
    n = hnn.trajectories
    angle = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    radius = rng.uniform(0.1, 1.0, size=(n, 1))
    t = np.linspace(0.0, hnn.t_max, hnn.points)[None, :]
    q = radius * np.cos(angle - 2 * t)  # the exact flow of H = q^2 + p^2
    p = radius * np.sin(angle - 2 * t)
    clean = np.stack([q, p], axis=-1)  # (n, points, 2)
    noisy = clean + hnn.noise * rng.normal(size=clean.shape)
    derivative = np.stack([2 * p, -2 * q], axis=-1)
    return noisy.astype(np.float32), derivative.astype(np.float32), clean[:, 0]


def _rk4_rollout(field, y0, dt, steps):
    """Classical RK4 for y' = field(y) from states y0 (n, 2); (n, steps + 1, 2)."""

    def step(y, _):
        k1 = field(y)
        k2 = field(y + dt / 2 * k1)
        k3 = field(y + dt / 2 * k2)
        k4 = field(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return y, y

    _, ys = jax.lax.scan(step, y0, None, length=steps)
    return jnp.concatenate([y0[None], ys]).transpose(1, 0, 2)


def _hamiltonian_network(config, workdir: Workdir) -> dict:
    """A plain network and a Hamiltonian one (Greydanus et al. 2019) on spring data.

    The plain network maps (q, p) to (q', p') directly; the Hamiltonian network maps
    (q, p) to a scalar H_theta and takes (q', p') = (dH_theta/dp, -dH_theta/dq) by
    autodiff, so its vector field conserves H_theta exactly. Both are trained on the
    same data, rolled out from the test states with RK4 and scored by the mean squared
    error of the true energy along the rollout.
    """
    hnn = config.hnn
    rng = np.random.default_rng(config.seed)
    states, derivatives, starts = _spring_data(hnn, rng)
    half = hnn.trajectories // 2
    train = (states[:half].reshape(-1, 2), derivatives[:half].reshape(-1, 2))
    test = (states[half:].reshape(-1, 2), derivatives[half:].reshape(-1, 2))
    optimizer = optax.chain(
        optax.add_decayed_weights(hnn.weight_decay), optax.adam(hnn.learning_rate)
    )

    def plain_field(model, params, y):
        return model.apply(params, y)

    def hamiltonian_field(model, params, y):
        def H(q, p, t):
            return model.apply(params, jnp.stack([q, p]))[0]

        def one(y):
            return jnp.stack(vector_field(H, y[0], y[1], 0.0))

        return jax.vmap(one)(y)

    results = {}
    key = jax.random.key(config.seed)
    for name, outputs, field in (
        ("baseline", 2, plain_field),
        ("hnn", 1, hamiltonian_field),
    ):
        model = MLP((hnn.hidden, hnn.hidden, outputs))
        params = model.init(key, train[0][:1])

        def loss_fn(params, batch, key, model=model, field=field):
            y, target = batch
            return jnp.mean((field(model, params, y) - target) ** 2)

        fitted = fit(
            loss_fn,
            params,
            optimizer,
            train,
            steps=hnn.steps,
            batch_size=train[0].shape[0],
            seed=config.seed,
            log_every=max(hnn.steps // 20, 1),
            **workdir.fit_options,
            name=f"spring_{name}",
        ).params
        rollout = jax.jit(
            lambda params, y0, model=model, field=field: _rk4_rollout(
                lambda y: field(model, params, y), y0, hnn.rollout_dt, hnn.rollout_steps
            )
        )
        trajectories = rollout(fitted, jnp.asarray(starts[half:], jnp.float32))
        energy = spring(trajectories[..., 0], trajectories[..., 1], 0.0)
        true_energy = spring(starts[half:, 0], starts[half:, 1], 0.0)[:, None]
        results[name] = {
            "train_loss": float(loss_fn(fitted, train, None)),
            "test_loss": float(loss_fn(fitted, test, None)),
            "energy_mse": float(jnp.mean((energy - true_energy) ** 2)),
            "trajectories": np.asarray(trajectories),
        }
    results["true_energy"] = np.asarray(spring(starts[half:, 0], starts[half:, 1], 0.0))
    return results


def _figure_hnn(networks):
    figure, axes = new_figure(1, 2, size=(10.0, 4.2))
    for name, color in (("baseline", "tab:red"), ("hnn", "tab:blue")):
        trajectory = networks[name]["trajectories"][0]
        axes[0].plot(
            trajectory[:, 0], trajectory[:, 1], color=color, lw=0.8, label=name
        )
        energy = np.sum(networks[name]["trajectories"] ** 2, axis=-1)
        axes[1].plot(
            np.mean((energy - networks["true_energy"][:, None]) ** 2, axis=0),
            color=color,
            label=name,
        )
    radius = networks["true_energy"][0] ** 0.5
    angle = np.linspace(0, 2 * np.pi, 200)
    axes[0].plot(
        radius * np.cos(angle), radius * np.sin(angle), "k--", lw=0.8, label="exact"
    )
    axes[0].set_aspect("equal")
    axes[0].set_title("spring rollout from a test state (q, p)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("rollout step")
    axes[1].set_title("energy MSE over the test states")
    for ax in axes:
        ax.legend(fontsize=7)
    return figure


def _run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    unknown = set(config.methods) - {"euler", "symplectic_euler", "leapfrog", "rk4"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)} in config.methods")
    runs = _long_runs(config)
    drift = {
        system: {
            method: float(runs[system, method]["error"].max())
            for method in config.methods
        }
        for system in SYSTEMS
    }
    half = config.steps // 2
    growth = {
        system: {
            method: float(
                runs[system, method]["error"][half:].max()
                / runs[system, method]["error"][1 : half + 1].max()
            )
            for method in config.methods
        }
        for system in SYSTEMS
    }
    orders = _leapfrog_order(config) if "leapfrog" in config.methods else {}
    driven = _driven(config)
    trajectory_error = float(
        np.max(np.abs(driven["along_trajectory"] - driven["chain_rule"][1:-1]))
    )
    chain_error = float(np.max(np.abs(driven["chain_rule"] - driven["explicit"])))

    for system in SYSTEMS:
        if "leapfrog" in config.methods:
            workdir.check(
                f"{system}: leapfrog energy error, 2nd half / 1st half",
                growth[system]["leapfrog"],
                target=f"<= {BOUNDED_RATIO} (bounded)",
                source=HAIRER,
                passed=growth[system]["leapfrog"] <= BOUNDED_RATIO,
            )
            workdir.check(
                f"{system}: leapfrog energy error order (dt vs dt/2)",
                orders[system],
                target="2",
                source=HAIRER,
                passed=abs(orders[system] - 2) <= ORDER_TOL,
            )
        if "euler" in config.methods:
            workdir.check(
                f"{system}: Euler energy error, 2nd half / 1st half",
                growth[system]["euler"],
                target="> 1 (grows)",
                source=HAIRER,
                passed=growth[system]["euler"] > 1.0,
            )
    euler_drift = (
        max(drift[system]["euler"] for system in SYSTEMS)
        if "euler" in config.methods
        else None
    )
    for method in config.methods:
        worst = max(drift[system][method] for system in SYSTEMS)
        symplectic = method in ("symplectic_euler", "leapfrog")
        if symplectic and euler_drift is not None:
            target, passed = (
                f"< Euler's {euler_drift:.3g} (bounded)",
                worst < euler_drift,
            )
        elif method == "euler":
            target, passed = "grows without bound (growth rows above)", None
        else:
            target, passed = "small, slowly drifting", None
        workdir.check(
            f"energy_drift.{method} (max rel. energy error, all systems)",
            worst,
            target=target,
            source=HAIRER,
            passed=passed,
        )
    workdir.check(
        "energy_rate_max_abs_error: abs(dH/dt along trajectory - chain rule), "
        "parametric oscillator",
        trajectory_error,
        target=f"<= {TRAJECTORY_RATE_ATOL:g}",
        source=SOURCE,
        passed=trajectory_error <= TRAJECTORY_RATE_ATOL,
    )
    workdir.check(
        "parametric oscillator: max abs(chain rule - explicit dH/dt)",
        chain_error,
        target=f"<= {CHAIN_RULE_ATOL:g} (rounding)",
        source=SOURCE,
        passed=chain_error <= CHAIN_RULE_ATOL,
    )

    rows = [
        "| system | " + " | ".join(config.methods) + " |",
        "|---|" + "---|" * len(config.methods),
    ]
    for system in SYSTEMS:
        cells = " | ".join(f"{drift[system][m]:.3e}" for m in config.methods)
        rows.append(f"| {system} | {cells} |")
    workdir.note(
        f"Maximum relative energy error over {config.steps} steps:\n\n"
        + "\n".join(rows)
    )
    workdir.save_figure(
        _figure_energy(config, runs),
        "energy_error",
        caption="Relative energy error against time (log scale): "
        "symplectic methods stay bounded, explicit Euler grows.",
    )
    workdir.save_figure(
        _figure_phase(config, runs),
        "phase_portraits",
        caption="Phase portraits: leapfrog stays on the energy "
        "surface, Euler spirals outwards.",
    )
    workdir.save_figure(
        _figure_driven(driven),
        "energy_rate",
        caption="Parametric oscillator: dH/dt along the numerical "
        "trajectory equals the chain-rule rate, which equals the "
        "explicit dH/dt.",
    )

    results = {}
    if config.hnn.enabled:
        networks = _hamiltonian_network(config, workdir)
        hnn_mse, base_mse = (
            networks["hnn"]["energy_mse"],
            networks["baseline"]["energy_mse"],
        )
        workdir.check(
            "spring: energy MSE of the rollout, Hamiltonian network",
            hnn_mse,
            target="3.8e-4 (vs 1.7e-1 for the baseline); below the baseline",
            source=GREYDANUS,
            passed=hnn_mse < base_mse,
        )
        workdir.check(
            "spring: energy MSE of the rollout, plain network",
            base_mse,
            target="1.7e-1",
            source=GREYDANUS,
        )
        rows = [
            "| network | train loss | test loss | energy MSE |",
            "|---|---|---|---|",
        ]
        for name in ("baseline", "hnn"):
            n = networks[name]
            rows.append(
                f"| {name} | {n['train_loss']:.3e} | {n['test_loss']:.3e} | "
                f"{n['energy_mse']:.3e} |"
            )
        workdir.note(
            f"Ideal spring, {config.hnn.trajectories // 2} training "
            f"trajectories, {config.hnn.steps} Adam steps; rollouts of "
            f"{config.hnn.rollout_steps} RK4 steps of {config.hnn.rollout_dt:g} "
            "from the test states:\n\n" + "\n".join(rows)
        )
        workdir.save_figure(
            _figure_hnn(networks),
            "hamiltonian_network",
            caption="Spring rollouts: the Hamiltonian network stays on "
            "its energy level, the plain network drifts.",
        )
        results["hamiltonian_network"] = {
            name: {k: v for k, v in networks[name].items() if k != "trajectories"}
            for name in ("baseline", "hnn")
        }

    return results | {
        "energy_drift": {
            method: max(drift[system][method] for system in SYSTEMS)
            for method in config.methods
        },
        "energy_drift_by_system": drift,
        "energy_growth_second_half_over_first": growth,
        "leapfrog_energy_order": orders,
        "energy_rate_max_abs_error": trajectory_error,
        "energy_rate_chain_rule_vs_explicit_max_abs_error": chain_error,
        "steps": config.steps,
    }

"""Config of ``hamiltonian``: energy along Hamilton's flow, four integrators.

Run:
  chainlab run hamiltonian                  # paper scale, ~1 min on a laptop CPU
  chainlab run hamiltonian --variant quick  # smoke test, a few seconds

What it should reach (float64, 10^5 steps per system and method): leapfrog keeps the
relative energy error bounded (no growth from the first to the second half of the run)
at about 1e-5 (oscillator, pendulum, dt = 0.01) to 3e-4 (Kepler orbit with
eccentricity 0.5) and halving dt divides it by 4 (order 2); symplectic Euler is bounded
at O(dt); explicit Euler's error grows without bound (the oscillator's energy is
multiplied by (1 + dt^2) per step, e^10 after 10^5 steps); RK4 drifts slowly from a tiny
start. For the parametric oscillator H = p^2/2 + w(t)^2 q^2/2, dH/dt along the numerical
trajectory (central differences) matches the chain-rule energy rate to ~1e-6, and the
chain rule equals the explicit dH/dt to rounding (~1e-15). On the ideal spring the
Hamiltonian network's rollouts keep the energy MSE near 1e-4 (Greydanus et al. 2019:
3.8e-4), well below the plain network's (~6e-3 here; 1.7e-1 in the paper).
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.x64 = True  # energy errors down to 1e-12 need float64
    config.methods = ("euler", "symplectic_euler", "leapfrog", "rk4")
    # Long runs: steps per system and method, and the step size of each system.
    config.steps = 100_000
    config.dt_oscillator = 0.01
    config.dt_pendulum = 0.01
    config.dt_kepler = 0.01
    # Initial states: oscillator q = 1, pendulum released at angle pendulum_q0 (rad),
    # Kepler orbit of eccentricity kepler_e from its pericentre (period 2 pi).
    config.pendulum_q0 = 2.0
    config.kepler_e = 0.5
    # All systems are separable, so one fixed-point iteration makes the symplectic
    # schemes exact and explicit.
    config.fixed_point_iterations = 1
    # Order of leapfrog's energy error: runs of order_steps at dt and 2 order_steps
    # at dt / 2 (same time span).
    config.order_steps = 10_000
    # Parametric oscillator w(t) = w0 (1 + eps cos(Omega t)), integrated by RK4.
    config.driven_w0 = 1.0
    config.driven_eps = 0.3
    config.driven_omega = 1.3  # away from the parametric resonances at 2 w0 / n
    config.driven_dt = 1e-3
    config.driven_steps = 20_000
    config.plot_points = 2000  # points per curve in the figures
    # Hamiltonian neural network vs a plain network on the ideal spring H = q^2 + p^2,
    # the setting of Greydanus et al. 2019: 25 training / 25 test trajectories of 30
    # noisy points on [0, 3], 200-200 tanh MLPs, 2000 full-batch Adam steps, L2 1e-4.
    config.hnn = ml_collections.ConfigDict()
    config.hnn.enabled = True
    config.hnn.data = ml_collections.ConfigDict()  # chainlab.science.systems
    config.hnn.data.trajectories = 50  # spring_observations: half train, half test
    config.hnn.data.points = 30
    config.hnn.data.t_max = 3.0
    config.hnn.data.noise = 0.1
    config.hnn.hidden = 200
    config.hnn.steps = 2000
    config.hnn.learning_rate = 1e-3
    config.hnn.weight_decay = 1e-4
    config.hnn.rollout_dt = 0.01
    config.hnn.rollout_steps = 2000  # t in [0, 20]
    if variant == "quick":
        config.steps = 2000
        config.order_steps = 1000
        config.driven_steps = 2000
        config.plot_points = 200
        config.hnn.hidden = 64
        config.hnn.steps = 300
        config.hnn.rollout_steps = 300
    return config

"""Config of ``black_scholes``: Black-Scholes by autodiff and by the heat equation.

Run:
  chainlab run black_scholes                  # paper scale, ~30 s on a laptop CPU
  chainlab run black_scholes --variant quick  # smoke test, a few seconds

What it should reach (float64): the textbook option S = K = 100, r = 5%, sigma = 20%,
T = 1 year is worth 10.4506 (call) and 5.5735 (put); Crank-Nicolson on the transformed
heat equation (1000 x 250 grid) prices it to ~1e-4, with error falling as dx^2 (slope
-2 on the convergence plot) down to ~1e-5 at the finest grid; the transformed
closed-form price solves u_tau = u_xx to rounding (~1e-13); the autodiff greeks match
the closed forms to ~1e-15 relative and central finite differences to ~1e-7.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.x64 = True  # convergence down to 1e-6 and 1e-15 agreements need float64
    # The textbook option.
    config.S = 100.0
    config.K = 100.0
    config.T = 1.0
    config.r = 0.05
    config.sigma = 0.2
    config.strikes = (80.0, 90.0, 100.0, 110.0, 120.0)
    # Crank-Nicolson grid of the headline heat-equation price.
    config.num_x = 1000
    config.num_tau = 250
    config.half_width = 5.0  # domain half-width in x, in units of sigma sqrt(T)
    config.rannacher_steps = 2
    # Tolerance of the headline heat-equation price: the error is ~1e-4 at 1000 x 250
    # and grows as dx^2 on coarser grids.
    config.heat_price_atol = 2e-4
    # Convergence study: num_x per grid, with num_tau = num_x // tau_ratio.
    config.convergence_num_x = (50, 100, 200, 400, 800, 1600, 3200)
    config.tau_ratio = 4
    # Greeks: spots x expiries grid, and the relative central-difference step.
    config.greek_spots = 13  # spots from 0.7 K to 1.3 K
    config.greek_expiries = (0.25, 1.0, 2.0)
    config.fd_step = 1e-4
    # Points per axis of the PDE-residual grids.
    config.residual_points = 41
    if variant == "quick":
        # The largest grid of the convergence study: its programs are reused.
        config.num_x = 200
        config.num_tau = 50
        config.heat_price_atol = 5e-3
        config.convergence_num_x = (50, 100, 200)
        config.greek_spots = 5
        config.residual_points = 9
    return config

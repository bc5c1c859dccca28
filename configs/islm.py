"""Config of ``islm``: IS-LM comparative statics by the implicit function theorem.

Run:
  chainlab run islm                  # paper scale, ~20 s on a laptop CPU
  chainlab run islm --variant quick  # smoke test, a few seconds

What it should reach (float64): the textbook economy of Mankiw (Macroeconomics, ch. 11,
problem 3) has its equilibrium at Y = 1100, r = 6 and aggregate demand Y = 850 + 500/P,
so dY/dP = -125 at P = 2; the slope from the implicit function theorem equals the
closed form -(b / D) M / P^2 to ~1e-13 relative and central finite differences of the
Newton solver to ~1e-9. Raising G by 50 moves the equilibrium to (1200, 7), raising M
by 200 to (1150, 5.5), exactly as the comparative statics predict (the model is
linear). The semi-log money demand variant matches its own closed form
dY/dP = -b Y / (P (b + (1 - c) eta Y)) equally well, and over ``num_economies`` random
linear economies the IFT slope never differs from the closed form by more than ~1e-12.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.x64 = True  # finite differences and 1e-12 agreements need float64
    # The linear economy: C = c0 + c (Y - T), I = i0 - b r, (M/P)^d = k Y - h r.
    config.c0 = 200.0
    config.c = 0.75
    config.i0 = 200.0
    config.b = 25.0
    config.k = 1.0
    config.h = 100.0
    # Policy and the price level: G, T, M, P.
    config.G = 100.0
    config.T = 100.0
    config.M = 1000.0
    config.P = 2.0
    # The nonlinear economy: same C and I, money demand k Y exp(-eta r).
    config.semilog_k = 1.0
    config.semilog_eta = 0.1
    # Policy shifts studied (Mankiw 3(b) and 3(c)).
    config.delta_G = 50.0
    config.delta_M = 200.0
    # Central finite-difference step in P, relative to P.
    config.fd_step = 1e-5
    # Random linear economies for the IFT-vs-closed-form sweep.
    config.num_economies = 2000
    # Figure: price levels for the AD curve and interest rates for IS/LM.
    config.price_min = 1.0
    config.price_max = 5.0
    config.plot_points = 200
    if variant == "quick":
        config.num_economies = 20
        config.plot_points = 30
    return config

"""Config of ``activation_kinks``: derivative conventions at kinks, fan-out, modes.

Run:
  chainlab run activation_kinks                  # paper scale, ~20 s on a laptop CPU
  chainlab run activation_kinks --variant quick  # smoke test, a few seconds

What it should reach: derivative at 0 of ELU 1 (side="right") and alpha (side="left"),
of ReLU 0, of leaky ReLU its slope; the fan-out gradient (sum of branch gradients)
equal to float64 central finite differences within 1e-6; every custom_jvp rule working
in forward mode, ``jax.hessian`` and Jacobian-of-gradient, while the ``custom_vjp``
version fails forward mode with JAX's TypeError.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # alpha != 1 so ELU's right derivative (1) and left derivative (alpha) differ at 0.
    config.elu_alpha = 0.5
    config.leaky_slope = 0.1
    # Fan-out: x (dim) -> h = elu(W x + b) -> `branches` heads tanh(A_i h), summed.
    config.fanout_dim = 8
    config.fanout_branches = 3
    config.fanout_trials = 50  # random points x at which the gradient is checked
    config.plot_points = 801  # grid points per activation in the figure
    if variant == "quick":
        config.fanout_dim = 4
        config.fanout_trials = 3
        config.plot_points = 101
    return config

"""Config of ``gradient_paths``: gradients split over the paths of a computation.

Run:
  chainlab run gradient_paths                  # paper scale, ~1 min on a laptop CPU
  chainlab run gradient_paths --variant quick  # smoke test, seconds

What it should reach: every split sums to ``jax.grad`` (float64: ~1e-15; float32:
~1e-7 relative); the fan-out terms equal each branch's gradient, batch norm's three
terms their closed forms and a shared temperature's per-layer terms the closed-form
d L / d tau, all to float64 round-off; a RealNVP's split at (z, log det) equals
``chainlab.flows.gradient_pathways``. Reported: the share through each residual
block's skip connection over training, the share of the first layer's gradient
through batch vs instance norm statistics by batch size, the attention input
gradient through queries, keys and values over the temperature, and what a split
costs against one ``jax.grad``.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Fan-out: h = elu(W x + b) in R^fanout_dim feeds fanout_branches branches.
    config.fanout_dim = 8
    config.fanout_branches = 3
    config.fanout_trials = 64
    config.elu_alpha = 1.0
    # Normalization: x (n, spatial, channels) -> Dense -> norm -> tanh -> mean -> Dense.
    config.channels = 4
    config.spatial = 6
    config.eps = 1e-5
    config.norm_batch_sizes = [2, 4, 16, 64]
    # Attention: self-attention on tokens x (tokens, model_dim), tau on a log grid.
    config.tokens = 8
    config.model_dim = 8
    config.tau_range = [0.05, 20.0]
    config.tau_points = 9
    config.shared_tau = 2.0
    # Residual MLP on two moons (float32): blocks of width, Adam, evaluations.
    config.blocks = 3
    config.width = 32
    config.learning_rate = 3e-3
    config.steps = 1500
    config.batch_size = 128
    config.eval_every = 100
    config.probe_size = 256  # points the splits are measured on
    config.timing_repeats = 30  # a split's time against one jax.grad (medians)
    # RealNVP on two moons: split at (z, log det) before and after flow_steps.
    config.flow_layers = 4
    config.flow_hidden = [32, 32]
    config.flow_steps = 1000
    if variant == "quick":
        config.fanout_trials = 4
        config.norm_batch_sizes = [4]
        config.tau_points = 3
        config.blocks = 2
        config.width = 8
        config.steps = 40
        config.eval_every = 20
        config.probe_size = 32
        config.timing_repeats = 3
        config.flow_layers = 2
        config.flow_hidden = [8]
        config.flow_steps = 20
    return config

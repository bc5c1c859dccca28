"""Config of ``maxout_routing``: gradient routing through a maxout network on digits.

Run:
  chainlab run maxout_routing                  # paper scale, ~1 min on a laptop CPU
  chainlab run maxout_routing --variant quick  # smoke test, a few seconds
  chainlab run maxout_routing --set pieces=2 --set hidden="(128,)"

What it should reach: per test sample, only the winning piece of every maxout unit gets
gradient (non-winner gradients exactly 0, a fraction 1/pieces of the pieces non-zero);
an exact tie (a duplicated piece) sends the whole gradient to the lowest index, where
``jnp.max`` would split it; test accuracy of at least 0.95 on the 360 test digits
(chainlab.data (digits protocol), inputs x / 16; the ReLU MLP reference of the same
width is trained alongside for comparison).
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Network: maxout layers of `hidden` units with `pieces` affine pieces each, then a
    # dense layer to the 10 logits.
    config.hidden = (64, 64)
    config.pieces = 4
    # Optimisation (Adam on the mean cross-entropy).
    config.steps = 2000
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.eval_every = 100  # also when piece wins are counted on the train split
    # Routing checks: per-sample gradients of this many test digits.
    config.routing_samples = 360
    # Train a ReLU MLP of the same widths as a reference accuracy.
    config.reference_mlp = True
    if variant == "quick":
        config.hidden = (32,)
        config.pieces = 3
        config.steps = 150
        config.batch_size = 64
        config.learning_rate = 3e-3
        config.eval_every = 50
        config.routing_samples = 24
        config.reference_mlp = False
    return config

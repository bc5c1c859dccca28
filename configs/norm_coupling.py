"""Config of ``norm_coupling``: how batch, instance and layer norm couple samples.

Run:
  chainlab run norm_coupling                  # paper scale, ~15 s on a laptop CPU
  chainlab run norm_coupling --variant quick  # smoke test, a few seconds

What it should reach: the cross-sample Jacobian blocks d y[a] / d x[b] (a != b) are
non-zero for batch norm and exactly 0 for instance and layer norm; the batch-norm input
gradient sums to 0 over the batch (float64: ~1e-16 relative; float32: ~1e-7) and is
orthogonal to the normalized input when eps = 0; per-example gradients of a batch-norm
model under plain ``vmap`` (batch of one) lose the first layer's gradient entirely
(exactly 0), with ``axis_name`` they sum to the batch gradient but are not the
per-sample loss gradients, while for layer norm all three decompositions agree.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.eps = 1e-5  # the usual default (Flax, PyTorch)
    # Cross-sample Jacobian: inputs (batch_size, spatial, channels), so instance norm
    # has a spatial axis to normalize over and all three layers see the same input.
    config.batch_size = 12
    config.spatial = 6
    config.channels = 4
    # Batch-norm gradient identities: random (x, dL/dy) draws, float32 and float64.
    config.identity_trials = 200
    # Per-example gradients: x (per_example_batch, in_features) -> Dense(hidden) ->
    # norm -> tanh -> Dense(1), squared error against a random teacher.
    config.per_example_batch = 16
    config.in_features = 6
    config.hidden = 8
    if variant == "quick":
        config.batch_size = 4
        config.spatial = 3
        config.channels = 3
        config.identity_trials = 4
        config.per_example_batch = 4
        config.in_features = 3
        config.hidden = 4
    return config

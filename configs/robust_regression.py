"""Config of ``robust_regression``: linear regression with gross errors, three losses.

Run:
  chainlab run robust_regression                  # paper scale, ~30 s on a laptop CPU
  chainlab run robust_regression --variant quick  # smoke test, a few seconds

What it should reach: with 10% one-sided gross errors (about 20 noise standard
deviations), the squared loss's parameter error is O(1) (the intercept absorbs
fraction x shift ~ 2), Huber's (delta = 1.345, 95% efficiency at the Gaussian) and the
absolute loss's stay near 0.1-0.2, i.e. Huber is at least 4x better than squared. Each
gradient fit agrees with an independent solver (least squares, scipy's Huber
``least_squares``, the LP median regression) to ~1e-3, and the Huber derivative equals
clip(r, -delta, delta) exactly on a grid that contains r = 0 and r = +-delta.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Data: y = X w + b + N(0, noise_std^2), X ~ N(0, I); a fraction of the responses
    # gets a one-sided gross error drawn uniformly from outlier_scale * [0.5, 1.5].
    config.num_samples = 1000
    config.num_features = 5
    config.noise_std = 1.0
    config.outlier_fraction = 0.1
    config.outlier_scale = 20.0
    # Huber thresholds (in units of the residual); huber_delta is the headline one
    # (1.345 sigma gives 95% efficiency under Gaussian noise, Huber 1964).
    config.huber_delta = 1.345
    config.huber_deltas = (0.5, 1.345, 3.0)
    # Full-batch Adam with cosine decay: every loss is convex, so this converges to the
    # M-estimate and is checked against an independent solver.
    config.steps = 3000
    config.learning_rate = 0.05
    config.plot_points = 801  # grid of the loss/derivative figure (contains 0, +-delta)
    if variant == "quick":
        config.num_samples = 200
        config.steps = 800
        config.plot_points = 81
    return config

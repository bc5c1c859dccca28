"""Config of ``integrated_gradients``: quadrature convergence, maps, deletion, speed.

Run:
  chainlab run integrated_gradients                  # paper scale, ~1-3 min on a laptop
  chainlab run integrated_gradients --variant quick  # smoke test, ~10-20 s

Mostly compilation: the convergence study compiles one program per quadrature rule
(every step count of the grid at once).

What it should reach: a tanh MLP 64-128-128-10 at ~97% test accuracy on digits; the
median relative completeness error of 50-step Gauss-Legendre far below the IG paper's 5%
(~1e-6, float32 rounding); Gauss-Legendre and the midpoint rule below 5% after a few
steps, left and right Riemann only after a few dozen; Captum-style trapezoid weights
stuck near 1/n; integrated gradients deleting the evidence faster than a random order
(smaller deletion area); a few hundredths of a millisecond per image for 50 steps.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Classifier: MLP 64 -> 128 -> 128 -> 10, tanh, on x / 16 (chainlab.data (digits
    # protocol)).
    config.hidden = (128, 128)
    config.train_steps = 2000
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.eval_every = 500
    config.min_test_accuracy = 0.95  # checked; ~0.97 is typical
    # Attributions explain the predicted class's logit from the all-zero (black) image.
    config.test_images = 360  # images for the convergence table and deletion curves
    config.steps_grid = (
        1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64, 80, 100, 128, 160,
        200, 250, 300,
    )  # fmt: skip
    # Find the exact first step count under 5% by trying every count between the two
    # grid points that bracket it (False: report the first grid point).
    config.refine_first_below = True
    config.ig_steps = 50  # Gauss-Legendre steps for maps, deletion and timing
    config.map_digits = 8  # columns of the attribution-map figure
    config.timing_images = 200
    config.timing_repeats = 30
    if variant == "quick":
        config.train_steps = 150
        config.eval_every = 0
        config.min_test_accuracy = 0.85
        config.test_images = 24
        config.steps_grid = (1, 8, 50)
        config.refine_first_below = False
        config.map_digits = 4
        config.timing_images = 24
        config.timing_repeats = 3
    return config

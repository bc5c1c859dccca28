"""Config of ``jacobian_regularization``: Hoffman et al. (2019) on digits, offline.

Run:
  chainlab run jacobian_regularization                  # paper scale, 4-7 min on CPU
  chainlab run jacobian_regularization --variant quick  # smoke test, ~10 s
  chainlab run jacobian_regularization --set architecture=cnn  # a small CNN, ~20 min

With the CNN (3 seeds, no sweep: 10 min) the projection penalty cuts ||J||_F from 53.1
to 4.6 (11.6x) for 0.56 points of accuracy; noise sigma 0.3 accuracy 0.82 -> 0.92, PGD
epsilon 0.1 0.41 -> 0.84. Its exact penalty costs ten VJPs through the convolutions and
their reverse pass: a step takes 29-40 ms (43-53 ms with XLA's default YNNPACK
fusions, see ``eigen_matmuls``) against 4.6 ms with one projection, and a projection
step costs 2.5-3x a plain one (the speed goal, from benchmarks/jacobian_vs_pytorch.py,
is set for the MLP).

What it should reach (paper scale, 3 seeds, 4 min on a 2-core CPU): the
64-128-128-10 tanh MLP trained without a regulariser reaches ~99.0-99.3% test accuracy
with a mean input-output Jacobian norm ||J||_F ~ 47.5 (logits with respect to pixels /
16); the projection penalty (n_proj = 1) at strength 0.01 cuts ||J||_F ~15x (to ~3.1)
for -0.1 to 0.5 points of clean accuracy, one or two of the 360 test images depending
on the initialisation (goal: >= 10x for <= 1.5 points), and lifts accuracy under
Gaussian input noise (sigma 0.3) from ~76% to ~91% and under PGD at epsilon 0.1 from
~29% to ~70%.
The exact penalty gives the same model as the projection one. A jitted
projection-penalty step costs about 2x a plain step (goal: <= 3x). The quick variant
trains 200 steps only, so it reports the training goals without a verdict.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Training runs per mode use seeds seed, seed + 1, ...; figures are seed means.
    config.num_seeds = 3
    # Inputs are pixels / 16 (chainlab.data, digits protocol), outputs 10 logits, tanh
    # throughout.
    # "mlp": Dense layers of widths `hidden`; "cnn": 3x3 convolutions of widths
    # `conv_features` (the second and later with stride 2), then one Dense layer.
    config.architecture = "mlp"
    config.hidden = (128, 128)
    config.conv_features = (16, 32)
    config.steps = 3000
    config.batch_size = 64
    config.learning_rate = 1e-3
    # loss = cross-entropy + strength * mean_batch ||J||_F^2. Hoffman et al.'s
    # lambda_JR multiplies (1/2) ||J||_F^2, so strength = lambda_JR / 2; their code's
    # defaults lambda_JR = 0.01 (README) and 0.1 (MNIST example) span 0.005 - 0.05.
    config.strength = 0.01
    config.num_projections = 1
    # Strength sweep (exact and projection penalties, first seed only); () skips it.
    config.sweep_strengths = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
    # Robustness: Gaussian input noise (averaged over noise draws) and L-inf attacks
    # (FGSM, and PGD with step 2.5 * epsilon / pgd_steps), images clipped to [0, 1].
    config.noise_sigma = 0.3
    config.noise_sigmas = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
    config.noise_draws = 20
    config.attack_epsilons = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
    config.pgd_steps = 20
    # Estimator study: num_projections grid, random keys per point, test examples.
    config.variance_projections = (1, 2, 4, 8, 16, 32, 64)
    config.variance_keys = 2000
    config.variance_examples = 8
    config.variance_chunk = 250  # keys evaluated at once (memory: chunk * n_proj)
    # Closed-form penalty gradient of a one-hidden-layer tanh network vs autodiff.
    config.closed_form_hidden = 32
    config.closed_form_examples = 64
    # Pass/fail verdicts for the training goals (Jacobian reduction, accuracy drop,
    # step-time ratio, noise robustness); off for runs too short to reach them.
    config.judge_training_goals = True
    # Timing of one jitted training step (batch_size rows): calls per mode in each
    # of 3 rounds, the modes taking turns in blocks of 10 calls.
    config.timing_repeats = 50
    # Compile the training steps with XLA's Eigen matrix products on the CPU instead
    # of YNNPACK fusions (chainlab.compilation): the exact step is ~20% faster. The
    # option is skipped where the backend is not the CPU or jaxlib lacks it.
    config.eigen_matmuls = True
    # Step time against the number of outputs C of the MLP (plain, exact in reverse
    # and forward mode, projection; about 1.5 min on a 2-core CPU); () skips it.
    config.scaling_outputs = (10, 32, 64, 100, 200, 1000)
    if variant == "quick":
        config.scaling_outputs = ()
        config.num_seeds = 1
        config.steps = 200
        config.judge_training_goals = False
        config.sweep_strengths = ()
        config.noise_sigmas = (0.0, 0.3, 1.0)
        config.noise_draws = 2
        config.attack_epsilons = (0.0, 0.1)
        config.pgd_steps = 3
        config.variance_projections = (1, 4)
        config.variance_keys = 1000
        config.variance_examples = 2
        config.closed_form_examples = 4
        config.timing_repeats = 5
    return config

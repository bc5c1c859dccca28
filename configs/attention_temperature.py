"""Config of ``attention_temperature``: dL/dtau three ways, then a learned temperature.

Run:
  chainlab run attention_temperature                  # paper scale, ~30 s, laptop CPU
  chainlab run attention_temperature --variant quick  # smoke test, seconds

What it should reach: the closed-form dL/dtau = -(1/tau) sum_j z_j dL/dz_j agrees with
autodiff to ~1e-14 relative and with central finite differences to ~1e-8 (float64)
at every temperature from 0.05 to 20; on the noisy retrieval task the learned
temperature settles where dL/dtau = 0 (within 10% of the grid-search optimum of the
final model) with test accuracy about 0.83; without noise the task is separable, the
loss has no minimum in tau (its grid optimum is the lower end, min_tau) and the learned
tau stalls where its gradient has faded. The quick variant is too short for tau to
settle on the noisy task (its learned_tau check fails there).
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Part 1: dL/dtau for L = sum(cotangent * attention(q, k, v, tau)), float64.
    config.grad_heads = 4
    config.grad_queries = 6
    config.grad_keys = 10
    config.grad_dim = 8
    config.grad_value_dim = 3
    config.tau_min = 0.05
    config.tau_max = 20.0
    config.num_taus = 25
    # Part 2: retrieval. Query q = normalize(W x) with x = mix @ key[target] + noise,
    # attention over the unit-norm keys of `memory_size` memory slots with one-hot
    # values; Brier loss ||attention output - onehot(target)||^2. Learned: W, log tau.
    config.memory_size = 32
    config.dim = 16
    config.noise = 0.3  # per coordinate; test accuracy ~0.83, tau settles ~0.04
    config.train_size = 4096
    config.test_size = 2048
    config.init_tau = 1.0
    config.min_tau = 0.01  # CLIP clips its logit scale 1/tau at 100
    config.learning_rate = 0.02
    config.steps = 2000
    config.batch_size = 256
    config.log_every = 20
    config.grid_points = 201  # tau grid for the optimum of the final model
    config.judge_training_goals = True  # the quick run is too short to settle tau
    if variant == "quick":
        config.judge_training_goals = False
        config.grad_heads = 2
        config.grad_queries = 3
        config.grad_keys = 4
        config.grad_dim = 4
        config.grad_value_dim = 2
        config.num_taus = 5
        config.memory_size = 8
        config.dim = 8
        config.train_size = 512
        config.test_size = 256
        config.noise = 0.45
        config.learning_rate = 0.1
        config.steps = 100
        config.batch_size = 128
        config.log_every = 10
        config.grid_points = 41
    return config

"""Config of ``triplet_embedding``: a digits embedding learned with the triplet loss.

Run:
  chainlab run triplet_embedding                  # paper scale, ~2 min on a laptop CPU
  chainlab run triplet_embedding --variant quick  # smoke test, a few seconds
  chainlab run triplet_embedding --set mining=batch_hard --set p=3.0

What it should reach: k-NN accuracy (k = 5, fitted on the train embeddings) of at
least 0.95 on the 360 test digits (chainlab.data (digits protocol); raw pixels give
~0.98), and zero non-finite parameter-gradient entries when every anchor is its own
positive (the naive ``jnp.linalg.norm`` loss gives NaN there), and no collapse: test
embeddings spread (mean pairwise distance) well above the margin.
"""

import ml_collections

VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Network: MLP 64 -> hidden -> embedding_dim on x / 16, optionally projected onto
    # the unit sphere (FaceNet), where a margin of 0.2 is the usual choice.
    config.hidden = (256, 256)
    config.embedding_dim = 32
    config.activation = "tanh"  # "tanh" or "relu"
    config.normalize = True
    # Loss: triplet margin loss with p-norm distances on mined triplets.
    config.margin = 0.2
    config.p = 2.0
    # Semi-hard (FaceNet) by default: batch-hard with normalised embeddings tends to
    # sit in the collapsed state (all embeddings equal, loss = margin) for hundreds of
    # steps before escaping (Hermans et al. 2017; Xuan et al. 2020).
    config.mining = "semi_hard"  # "semi_hard" or "batch_hard"
    # Optimisation.
    config.steps = 2000
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.eval_every = 500
    # Evaluation: k-NN on the embedding; the finite-gradient check uses this many test
    # digits, each as its own positive.
    config.knn_k = 5
    config.min_knn_accuracy = 0.95  # checked
    config.finite_check_size = 64
    if variant == "quick":
        config.hidden = (64,)
        config.embedding_dim = 16
        config.steps = 150
        config.batch_size = 64
        config.learning_rate = 3e-3
        config.eval_every = 75
        config.finite_check_size = 16
        config.min_knn_accuracy = 0.8  # chance is 0.1
    return config

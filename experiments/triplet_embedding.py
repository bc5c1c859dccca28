"""Triplet embedding of digits: mined triplet loss, k-NN accuracy, finite gradients.

An MLP maps each digit (x / 16, chainlab.data (digits protocol)) to an embedding,
optionally on the unit sphere (``chainlab.embedding.normalize``), trained with
``chainlab.losses``' triplet margin loss on semi-hard mined triplets (Schroff et al.,
"FaceNet", CVPR 2015) or batch-hard ones (Hermans, Beyer & Leibe, "In Defense of the
Triplet Loss for Person Re-Identification", 2017). What is measured:

1. k-NN accuracy (``chainlab.embedding.knn_accuracy``) on the 360 test digits with
   neighbours among the train embeddings, next to k-NN on raw pixels (the classic
   baseline).
2. Finite gradients where points coincide: the parameter gradient of the triplet loss
   on a batch in which every anchor is its own positive (d_ap = 0) has no NaN or inf
   entry, during training and at the end; the same loss with ``jnp.linalg.norm``
   (gradient (a - p) / ||a - p|| = 0/0) is reported alongside.
3. Figures: a PCA projection of the test embeddings coloured by label, and the
   training curves.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab.data import digits_for_classifier
from chainlab.embedding import knn_accuracy, normalize, principal_components
from chainlab.losses import batch_hard_triplet, pairwise_distance, semi_hard_triplet
from chainlab.losses import triplet as triplet_loss
from chainlab.models import MLP
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.training import fit
from chainlab.validation import check_choice

FACENET = "Schroff et al. 2015 (FaceNet)"
ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
MINING = {"batch_hard": batch_hard_triplet, "semi_hard": semi_hard_triplet}


def _naive_triplet(a, p, n, margin):
    """The textbook loss: Euclidean norms from ``jnp.linalg.norm`` and a max."""
    d_ap = jnp.linalg.norm(a - p, axis=-1)
    d_an = jnp.linalg.norm(a - n, axis=-1)
    return jnp.maximum(d_ap - d_an + margin, 0.0)


def _nonfinite_counters(config, embed, x: np.ndarray):
    """Jitted counts of non-finite parameter-gradient entries, chainlab's and naive.

    Each anchor is its own positive (d_ap = 0); the negatives are the batch rolled by
    one.
    """
    anchors = jnp.asarray(x)
    negatives = jnp.roll(anchors, 1, axis=0)

    def ours(a, n):
        return triplet_loss(a, a, n, margin=config.margin, p=config.p, reduction="mean")

    def naive(a, n):
        return jnp.mean(_naive_triplet(a, a, n, config.margin))

    def counter(loss):
        def total(params):
            return loss(embed(params, anchors), embed(params, negatives))

        @jax.jit
        def count(params):
            grads = jax.tree.leaves(jax.grad(total)(params))
            return sum(jnp.sum(~jnp.isfinite(g)) for g in grads)

        # Host parameters: one compiled program however fit placed them.
        return lambda params: int(count(jax.device_get(params)))

    return counter(ours), counter(naive)


def _figure(test_embedding, y_test, history):
    figure, axes = new_figure(1, 2, size=(11.0, 4.5))
    projected = principal_components(test_embedding)
    scatter = axes[0].scatter(
        projected[:, 0], projected[:, 1], c=y_test, cmap="tab10", s=10, vmin=0, vmax=9
    )
    figure.colorbar(scatter, ax=axes[0], ticks=range(10), label="digit")
    axes[0].set_title("test embeddings, first two principal components")
    axes[0].set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    train = [r for r in history if r["split"] == "train"]
    evals = [r for r in history if r["split"] == "eval"]
    axes[1].plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("mined triplet loss")
    twin = axes[1].twinx()
    twin.plot(
        [r["step"] for r in evals],
        [r["knn_accuracy"] for r in evals],
        "o-",
        color="tab:green",
        label="k-NN test accuracy",
    )
    twin.set_ylabel("k-NN test accuracy")
    lowest = min((r["knn_accuracy"] for r in evals), default=1.0)
    twin.set_ylim(min(0.8, lowest - 0.02), 1.0)
    lines = axes[1].get_lines() + twin.get_lines()
    axes[1].legend(lines, [line.get_label() for line in lines], loc="center right")
    axes[1].set_title("training")
    return figure


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    check_choice("activation", config.activation, tuple(ACTIVATIONS))
    check_choice("mining", config.mining, tuple(MINING))
    split = digits_for_classifier()
    model = MLP(
        (*config.hidden, config.embedding_dim),
        activation=ACTIVATIONS[config.activation],
    )

    def embed(params, x):
        z = model.apply(params, x)
        return normalize(z) if config.normalize else z

    params = jax.jit(model.init)(jax.random.key(config.seed), split.x_train[:1])
    mined_loss = MINING[config.mining]

    def loss_fn(params, batch, key):
        del key  # deterministic
        x, y = batch
        z = embed(params, x)
        return mined_loss(z, y, margin=config.margin, p=config.p, reduction="mean")

    embed_jit = jax.jit(embed)

    def knn(params):
        train, test = embed_jit(params, split.x_train), embed_jit(params, split.x_test)
        return knn_accuracy(
            train, split.y_train, test, split.y_test, k=config.knn_k, p=config.p
        )

    count_ours, count_naive = _nonfinite_counters(
        config, embed, split.x_test[: config.finite_check_size]
    )
    nonfinite_seen = [count_ours(params)]

    def eval_fn(params):
        nonfinite_seen.append(count_ours(params))
        return {
            "knn_accuracy": knn(params),
            "nonfinite_grad_entries": nonfinite_seen[-1],
        }

    result = fit(
        loss_fn,
        params,
        optax.adam(config.learning_rate),
        (split.x_train, split.y_train),
        steps=config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_fn=eval_fn,
        eval_every=config.eval_every,
        log_every=max(config.steps // 30, 1),
        **workdir.fit_options,
        name="triplet",
    )
    params = result.params
    test_embedding = np.asarray(embed_jit(params, split.x_test))
    accuracy = knn(params)
    raw_accuracy = knn_accuracy(
        split.x_train, split.y_train, split.x_test, split.y_test, k=config.knn_k
    )
    spread = float(np.mean(pairwise_distance(test_embedding, p=config.p)))
    nan_gradients = int(sum(nonfinite_seen))
    naive_nan = count_naive(params)

    workdir.check(
        "knn_accuracy", accuracy, at_least=config.min_knn_accuracy, source=FACENET
    )
    workdir.check(
        "knn_accuracy on raw pixels (baseline)",
        raw_accuracy,
        info="reference",
        source="chainlab.embedding.knn_accuracy on x / 16",
    )
    workdir.check(
        "embedding spread (mean test pairwise distance)",
        spread,
        above=config.margin,
        label="margin (not collapsed)",
        source="collapse diagnostic (Hermans et al. 2017)",
    )
    workdir.check(
        "nan_gradients (anchor == positive, all evaluations)",
        nan_gradients,
        equals=0,
        source="chainlab.losses.triplet docstring: subgradient 0 at d = 0",
    )
    workdir.check(
        "non-finite gradient entries with jnp.linalg.norm (same batch)",
        naive_nan,
        above=0,
        label="why the custom rule exists",
        source="jnp.linalg.norm: gradient (a - p) / norm(a - p) = 0/0 at a = p",
    )
    num_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    workdir.note(
        f"Embedding: MLP {tuple(config.hidden)} -> {config.embedding_dim} "
        f"({config.activation}, {'unit sphere' if config.normalize else 'unnormalised'}"
        f"), triplet loss with margin {config.margin:g}, p = {config.p:g}, "
        f"{config.mining.replace('_', '-')} mining, batch {config.batch_size}, "
        f"{config.steps} Adam steps. k-NN with k = {config.knn_k} on the train "
        f"embeddings. The finite-gradient check takes {config.finite_check_size} test "
        f"digits, each as its own positive, over all {num_params} parameters at "
        f"initialisation and at each of {len(nonfinite_seen) - 1} evaluations."
    )
    workdir.save_figure(
        _figure(test_embedding, split.y_test, result.history),
        "embedding",
        caption="PCA of the test embeddings coloured by digit; training loss and "
        "k-NN test accuracy.",
    )
    return {
        "knn_accuracy": accuracy,
        "knn_accuracy_raw_pixels": raw_accuracy,
        "nan_gradients": nan_gradients,
        "embedding_spread": spread,
        "naive_norm_nan_gradients": naive_nan,
        "final_loss": [r for r in result.history if r["split"] == "train"][-1]["loss"],
    }

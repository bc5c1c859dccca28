"""Maxout routing on digits: only the winning piece learns, ties go to one piece.

A maxout network (``chainlab.models.MaxoutMLP``: ``chainlab.layers.Maxout`` layers,
then a dense readout) is trained on digits (chainlab.data (digits protocol), inputs
x / 16) with ``chainlab.training.fit``. The chain rule through y_j = max_p z_pj sends
dL/dy_j to the winning piece p* only (Goodfellow et al., "Maxout Networks", ICML 2013),
so, with the routing each layer reports itself (``chainlab.layers.maxout_routing``):

1. Per test sample, every non-winning piece's kernel and bias gradients are exactly 0,
   and the fraction of pieces with a non-zero gradient is 1 / pieces
   (``chainlab.layers.routed_gradient``).
2. Piece win counts on the train split are tracked over training (a piece that never
   wins never learns).
3. Ties: duplicating piece 0 into piece 1 of the trained network makes them tie
   exactly wherever piece 0 wins; the gradient goes to piece 0 alone, while the same
   network with ``jnp.max``'s tie rule (``ties="split"``) splits it in halves. A blank
   image at initialisation (zero biases) ties all pieces; again one piece gets it all.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab import models
from chainlab.activations import relu
from chainlab.data import digits_for_classifier
from chainlab.layers import routed_gradient
from chainlab.losses import cross_entropy
from chainlab.normalization import per_example_grads
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.training import classification_loss, fit
from chainlab.validation import check_at_least, check_in_range

SOURCE = "Goodfellow et al. 2013; chain rule through max"
ACCURACY_TARGET = 0.95


def _per_sample_grads(model: models.MaxoutMLP, params, x, y):
    def losses(params, batch):
        return cross_entropy(model.apply(params, batch[0]), batch[1])

    return per_example_grads(losses, params, (x, y), method="vmap")["params"]


@functools.partial(jax.jit, static_argnums=0)
def analyse(model: models.MaxoutMLP, params, x, y) -> dict[str, jax.Array]:
    """Gradient routing in every layer; layer 0's ties against ``jnp.max``'s rule."""
    _, routings = models.maxout_routings(model, params, x)
    grads = _per_sample_grads(model, params, x, y)
    routed = [
        routed_gradient(grads[f"maxout_{i}"], routing.winner)
        for i, routing in enumerate(routings)
    ]
    per_unit = jnp.concatenate([r.pieces_with_grad.ravel() for r in routed])
    ours = grads["maxout_0"]["bias"]  # (n, k, d)
    split_model = model.clone(ties="split")
    split = _per_sample_grads(split_model, params, x, y)["maxout_0"]["bias"]
    tie = routings[0].tied > 1
    total = jnp.sum(split, axis=1)
    # Share of the gradient piece 0 gets from jnp.max at ties with a non-zero total.
    shared = tie & (total != 0)
    share = jnp.where(shared, split[:, 0] / jnp.where(shared, total, 1.0), 0.0)
    return {
        "nonwinner_grad_max_abs": jnp.max(
            jnp.stack([r.to_losers_max_abs for r in routed])
        ),
        "nonzero_piece_grads": jnp.stack([jnp.sum(r.pieces_with_grad) for r in routed]),
        "pieces_with_grad_per_unit": jnp.stack([per_unit.min(), per_unit.max()]),
        "tie_units": jnp.sum(tie),
        "pieces_tied_max": jnp.max(routings[0].tied),
        "pieces_with_grad_at_tie_max": jnp.max(
            jnp.where(tie, routed[0].pieces_with_grad, 0)
        ),
        "tie_grad_all_to_piece0": jnp.all(
            jnp.where(tie[:, None], ours[:, 1:] == 0, True)
        ),
        "jnp_max_piece0_share": jnp.sum(share) / jnp.maximum(jnp.sum(shared), 1),
        # The total over pieces is the same either way: only the routing differs.
        "total_grad_max_abs_diff": jnp.max(jnp.abs(jnp.sum(ours, axis=1) - total)),
    }


win_fractions = jax.jit(models.maxout_win_fractions, static_argnums=0)


def _accuracy(logits: jax.Array, y: jax.Array) -> float:
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == y))


def _validate(config: ml_collections.ConfigDict) -> None:
    check_at_least("pieces", config.pieces, 2)  # maxout of one piece is linear
    check_at_least("number of hidden layers", len(config.hidden), 1)
    for width in config.hidden:
        check_at_least("hidden width", width, 1)
    # Per-sample gradients of the first routing_samples of the 360 test digits.
    check_in_range(
        "routing_samples", config.routing_samples, 1, 360, high_inclusive=True
    )


def _train(model, params, data, config, workdir, name, eval_fn=None):
    return fit(
        classification_loss(model.apply),
        params,
        optax.adam(config.learning_rate),
        data,
        steps=config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_fn=eval_fn,
        eval_every=config.eval_every if eval_fn else 0,
        log_every=max(config.steps // 20, 1),
        **workdir.fit_options,
        name=name,
    )


def _figure(history: list[dict], final_wins: list[np.ndarray], pieces: int):
    evals = [r for r in history if r["split"] == "eval"]
    steps = [r["step"] for r in evals]
    layers = len(final_wins)
    fig, axes = new_figure(2, layers + 1, size=(4.2 * (layers + 1), 6.5), squeeze=False)
    for i, wins in enumerate(final_wins):  # wins: (k, d_out)
        ax = axes[0, i]
        for p in range(pieces):
            ax.plot(steps, [r[f"wins_layer{i}_piece{p}"] for r in evals], label=f"p{p}")
        ax.set(
            title=f"maxout layer {i}: share of wins (train)", xlabel="step", ylim=(0, 1)
        )
        ax.legend(fontsize=7, ncols=pieces)
        ax = axes[1, i]  # final per-unit win shares, units sorted by piece 0's share
        order, bottom = np.argsort(-wins[0]), np.zeros(wins.shape[1])
        for p in range(pieces):
            ax.bar(np.arange(wins.shape[1]), wins[p, order], bottom=bottom, width=1.0)
            bottom += wins[p, order]
        ax.set(
            title=f"layer {i}: per-unit win shares at the end", xlabel="unit (sorted)"
        )
    axes[0, layers].plot(steps, [r["test_accuracy"] for r in evals], color="C0")
    axes[0, layers].set(title="test accuracy", xlabel="step")
    axes[1, layers].plot(steps, [r["dead_pieces"] for r in evals], color="C3")
    axes[1, layers].set(title="share of pieces winning no train sample", xlabel="step")
    return fig


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    _validate(config)
    data = digits_for_classifier()
    model = models.MaxoutMLP(tuple(config.hidden), config.pieces, num_outputs=10)
    params = model.init(jax.random.key(config.seed), data.x_train[:1])
    apply = jax.jit(model.apply)

    def eval_fn(params) -> dict[str, float]:
        values = {"test_accuracy": _accuracy(apply(params, data.x_test), data.y_test)}
        wins = win_fractions(model, params, data.x_train)
        for i, layer_wins in enumerate(wins):
            for p, share in enumerate(jnp.mean(layer_wins, axis=1)):
                values[f"wins_layer{i}_piece{p}"] = float(share)
        values["dead_pieces"] = float(
            jnp.mean(jnp.concatenate([jnp.ravel(w == 0) for w in wins]))
        )
        return values

    at_init = {"step": 0, "run": "maxout", "split": "eval", **eval_fn(params)}
    workdir.log_metrics(0, {k: v for k, v in at_init.items() if k != "step"})
    xs = jnp.asarray(data.x_test[: config.routing_samples])
    ys = jnp.asarray(data.y_test[: config.routing_samples])
    # Blank images at initialisation (zero biases): every piece of layer 0 ties at 0.
    blank = analyse(model, params, jnp.zeros_like(xs), ys)
    result = _train(
        model, params, (data.x_train, data.y_train), config, workdir, "maxout", eval_fn
    )
    # Back to plain default-device arrays (fit replicates over a device mesh), so the
    # analysis compiled for the initial parameters is reused.
    params = jax.tree.map(jnp.asarray, jax.device_get(result.params))
    history = [at_init, *result.history]
    final = [r for r in history if r["split"] == "eval"][-1]
    routing = jax.tree.map(np.asarray, analyse(model, params, xs, ys))
    ties = jax.tree.map(
        np.asarray, analyse(model, models.tie_maxout_pieces(model, params), xs, ys)
    )
    blank = jax.tree.map(np.asarray, blank)

    n, k = config.routing_samples, config.pieces
    results = {
        "nonwinner_grad_max_abs": float(routing["nonwinner_grad_max_abs"]),
        "test_accuracy": final["test_accuracy"],
        # Per layer: pieces with a non-zero gradient / all (sample, piece, unit).
        "nonzero_piece_grad_fraction": [
            int(count) / (n * k * width)
            for count, width in zip(
                routing["nonzero_piece_grads"], config.hidden, strict=True
            )
        ],
        "expected_fraction": 1.0 / k,
        "pieces_with_grad_per_unit": routing["pieces_with_grad_per_unit"].tolist(),
        "tie_units": int(ties["tie_units"]),
        "tie_pieces_with_grad_max": int(ties["pieces_with_grad_at_tie_max"]),
        "tie_grad_all_to_lowest_index": bool(ties["tie_grad_all_to_piece0"]),
        "jnp_max_tie_share_piece0": float(ties["jnp_max_piece0_share"]),
        "tie_total_grad_max_abs_diff": float(ties["total_grad_max_abs_diff"]),
        "blank_input_pieces_tied": int(blank["pieces_tied_max"]),
        "blank_input_pieces_with_grad": int(blank["pieces_with_grad_at_tie_max"]),
        "blank_input_jnp_max_share_piece0": float(blank["jnp_max_piece0_share"]),
        "dead_pieces_final": final["dead_pieces"],
    }
    if config.reference_mlp:
        reference = models.MLP((*config.hidden, 10), activation=relu)
        mlp = reference.init(jax.random.key(config.seed), data.x_train[:1])
        mlp = _train(
            reference,
            mlp,
            (data.x_train, data.y_train),
            config,
            workdir,
            "mlp_reference",
        )
        results["reference_mlp_test_accuracy"] = _accuracy(
            jax.jit(reference.apply)(mlp.params, data.x_test), data.y_test
        )
    _report(results, config, workdir)
    final_wins = [np.asarray(w) for w in win_fractions(model, params, data.x_train)]
    workdir.save_figure(
        _figure(history, final_wins, config.pieces),
        "piece_wins",
        caption="Top: share of (train sample, unit) pairs won by each piece during "
        "training, and test accuracy. Bottom: per-unit win shares at the end, and the "
        "share of pieces that never win.",
    )
    return results


def _report(results: dict, config: ml_collections.ConfigDict, workdir: Workdir) -> None:
    k, layers = config.pieces, len(config.hidden)
    check = functools.partial(workdir.check, source=SOURCE)
    check("nonwinner_grad_max_abs", results["nonwinner_grad_max_abs"], equals=0.0)
    check(
        "fraction of pieces with non-zero gradient (per layer)",
        results["nonzero_piece_grad_fraction"],
        equals=[1.0 / k] * layers,
        label="1/k",
    )
    check(
        "pieces with gradient per (sample, unit): min, max",
        results["pieces_with_grad_per_unit"],
        equals=[1, 1],
    )
    check(
        "exactly tied (sample, unit) pairs (duplicated piece)",
        results["tie_units"],
        above=0,
    )
    check(
        "pieces with gradient at an exact tie",
        results["tie_pieces_with_grad_max"],
        equals=1,
        label="never split",
    )
    check(
        "tie gradient all to the lowest index",
        results["tie_grad_all_to_lowest_index"],
        equals=True,
    )
    check(
        "jnp.max share of piece 0 at the same ties",
        results["jnp_max_tie_share_piece0"],
        close_to=0.5,
        atol=1e-6,
        label="jnp.max splits ties",
    )
    check(
        "blank image at init: pieces tied, pieces with gradient",
        [results["blank_input_pieces_tied"], results["blank_input_pieces_with_grad"]],
        equals=[k, 1],
    )
    check("test_accuracy", results["test_accuracy"], at_least=ACCURACY_TARGET)
    if config.reference_mlp:
        check(
            "ReLU MLP of the same widths: test accuracy",
            results["reference_mlp_test_accuracy"],
            info="reference",
        )
    workdir.note(
        f"Network: 64 -> maxout {tuple(config.hidden)} with {k} pieces -> dense 10, "
        f"Adam (lr {config.learning_rate:g}), batch {config.batch_size}, "
        f"{config.steps} steps, mean cross-entropy. Routing: per-sample parameter "
        f"gradients of the first {config.routing_samples} test digits; a piece "
        "'has gradient' when any entry of its kernel column or its bias is non-zero. "
        "Ties: piece 0 copied into piece 1 in every maxout layer of the trained "
        f"network gives {results['tie_units']} exactly tied (sample, unit) pairs in "
        "layer 0; the summed gradient over pieces is the same with `jnp.max` (max "
        f"difference {results['tie_total_grad_max_abs_diff']:.2e}), only its routing "
        f"differs. {100 * results['dead_pieces_final']:.1f}% of (unit, piece) pairs "
        "win no train sample at the end, so they receive no gradient at all."
    )

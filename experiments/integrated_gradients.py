"""Integrated gradients on digits: quadrature convergence, maps, deletion, speed.

A tanh MLP 64-128-128-10 is trained on digits (chainlab.data (digits protocol), inputs
x / 16); its predicted class's logit is explained from the all-zero image with
``chainlab.attribution.integrated_gradients`` (Sundararajan, Taly & Yan, "Axiomatic
Attribution for Deep Networks", ICML 2017). Four results:

1. Convergence: the relative completeness error
   ``|sum_i IG_i - (F(x) - F(0))| / |F(x) - F(0)|``
   (``chainlab.attribution.completeness_errors``), median over the test images,
   against the number of steps for every quadrature rule, and where each first drops
   below the 5% the IG paper (Sec. 5) asks for. Captum's trapezoid weights (its
   ``captum/attr/_utils/approximation_methods.py``), which are ours times
   ``(n - 1) / n`` (``chainlab.attribution.quadrature_rule``), are shown next to the
   true trapezoid rule.
2. Attribution maps of test digits: plain gradient, gradient x input, IG.
3. Faithfulness: deletion curves (``chainlab.attribution.deletion_curve``: pixels set
   to the baseline in attribution order, the predicted class's softmax probability
   watched) for IG, gradient x input and a random order, with the area under each
   curve (``deletion_area``; smaller is more faithful).
4. Speed: milliseconds per image for 50-step Gauss-Legendre IG, vmapped over a batch
   and jitted (the comparison with Captum is ``benchmarks/ig_vs_captum.py``).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab import attribution as attr
from chainlab.data import digits_for_classifier
from chainlab.models import MLP
from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir
from chainlab.training import classification_loss, fit, median_step_ms

PAPER = "Sundararajan et al. 2017, Sec. 5"
# The IG paper's advice: attributions should add up to within 5% of F(x) - F(x').
PAPER_TOLERANCE = 0.05
# 50-step Gauss-Legendre on a smooth tanh network leaves float32 rounding, ~1e-6; any
# real quadrature error at 50 nodes would be orders of magnitude above 1e-4.
GAUSS_LEGENDRE_50_TARGET = 1e-4
# 10x faster than Captum's ~0.6 ms per image (benchmarks/ig_vs_captum.py).
MS_PER_IMAGE_TARGET = 0.06

Logit = Callable[[jax.Array, jax.Array], jax.Array]


def _per_image(logit: Logit, explain: Callable) -> Callable:
    """``jit(vmap)`` over images ``(x, y)`` of ``explain(logit(., y), x)``."""
    return jax.jit(jax.vmap(lambda x, y: explain(lambda z: logit(z, y), x)))


def _median_errors(logit, xs, ys, method: str, steps: tuple[int, ...]):
    """Median over images of ``attribution.completeness_errors``: (ours, Captum's)."""
    errors = _per_image(
        logit, lambda f, x: attr.completeness_errors(f, x, steps=steps, method=method)
    )(xs, ys)
    return tuple(np.median(np.asarray(e), axis=0) for e in errors)


def _first_below(config, logit, xs, ys, method, grid, errors) -> int | None:
    """The first step count under 5%; between grid points too if ``refine``."""
    below = [i for i, e in enumerate(errors) if e < PAPER_TOLERANCE]
    if not below:
        return None
    first = grid[below[0]]
    between = tuple(range(grid[below[0] - 1] + 1, first)) if below[0] > 0 else ()
    if config.refine_first_below and between:
        refined, _ = _median_errors(logit, xs, ys, method, between)
        inside = [
            n for n, e in zip(between, refined, strict=True) if e < PAPER_TOLERANCE
        ]
        first = inside[0] if inside else first
    return first


def convergence(config, workdir: Workdir, logit: Logit, xs, ys) -> dict:
    """Median relative completeness error vs steps for every rule; table and plot."""
    errors, first, captum = {}, {}, {}
    for method in attr.METHODS:
        smallest = 2 if method == "riemann_trapezoid" else 1
        grid = tuple(n for n in config.steps_grid if n >= smallest)
        ours, captum_weights = _median_errors(logit, xs, ys, method, grid)
        errors[method] = dict(zip(grid, ours.tolist(), strict=True))
        if method == "riemann_trapezoid":
            captum = dict(zip(grid, captum_weights.tolist(), strict=True))
        first[method] = _first_below(config, logit, xs, ys, method, grid, ours)

    columns = {**errors, "trapezoid, Captum weights": captum}
    rows = [[n, *(c.get(n, "-") for c in columns.values())] for n in config.steps_grid]
    firsts = ["never" if first[m] is None else str(first[m]) for m in attr.METHODS]
    workdir.note(
        f"**Median relative completeness error** over {config.test_images} test "
        "images (predicted class logit, zero baseline, float32). Captum's trapezoid "
        "weights sum to (n-1)/n, so its error falls only as 1/n (last column), while "
        "the true trapezoid rule falls as 1/n^2.\n\n"
        + markdown_table(["steps", *columns], [*rows, ["**first < 5%**", *firsts, ""]])
    )
    _convergence_figure(workdir, columns)

    at = config.ig_steps
    workdir.check(
        f"median rel. completeness error, Gauss-Legendre {at} steps",
        errors["gausslegendre"][at],
        below=GAUSS_LEGENDRE_50_TARGET,
        source=PAPER + " (asks < 5%)",
    )
    refined = "" if config.refine_first_below else " (first grid point)"
    workdir.check(
        f"first steps with median rel. error < 5%{refined}",
        {m: "never" if steps is None else steps for m, steps in first.items()},
        info="measured",
        source=PAPER,
    )
    reached = {m: np.inf if s is None else s for m, s in first.items()}
    workdir.check(
        "steps to 5%: slower of Gauss-Legendre and midpoint",
        max(reached["gausslegendre"], reached["riemann_middle"]),
        below=min(reached["riemann_left"], reached["riemann_right"]),
        label="faster of left/right Riemann",
        source="quadrature error O(n^-2) or better vs O(1/n)",
    )
    return {
        "completeness_rel_error": {
            m: {str(n): e for n, e in errs.items()} for m, errs in errors.items()
        },
        "completeness_rel_error_captum_trapezoid": {
            str(n): e for n, e in captum.items()
        },
        "first_steps_below_5pct": first,
    }


def _convergence_figure(workdir: Workdir, columns: dict) -> None:
    figure, ax = new_figure(size=(6.5, 4.2))
    floor = 1e-9  # exact zeros (float32 luck) would vanish on a log axis
    for name, errs in columns.items():
        style = {"linestyle": "--", "color": "gray"} if "Captum" in name else {}
        values = np.maximum(list(errs.values()), floor)
        ax.loglog(list(errs), values, marker=".", label=name, **style)
    ax.axhline(PAPER_TOLERANCE, color="black", linewidth=0.8, linestyle=":")
    ax.text(1, PAPER_TOLERANCE * 1.2, "5% (IG paper)", fontsize=8)
    ax.set_xlabel("steps")
    ax.set_ylabel("median relative completeness error")
    ax.legend(fontsize=8)
    workdir.save_figure(
        figure,
        "completeness_convergence",
        caption="Relative completeness error vs steps, median over test images.",
    )


def attribution_maps(config, workdir: Workdir, maps: dict, xs, ys) -> None:
    """Figure: test digits next to their gradient, gradient x input and IG maps."""
    k = config.map_digits
    rows = [("input", np.asarray(xs[:k])), *maps.items()]
    figure, axes = new_figure(len(rows), k, size=(1.3 * k, 1.45 * len(rows)))
    for r, (name, images) in enumerate(rows):
        for c in range(k):
            ax, image = axes[r, c], np.asarray(images[c]).reshape(8, 8)
            if r == 0:
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(f"class {int(ys[c])}", fontsize=8)
            else:
                scale = max(float(np.abs(image).max()), 1e-12)
                ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    workdir.save_figure(
        figure,
        "attribution_maps",
        caption="Test digits (predicted class) and attributions of its logit; red "
        "supports the class, blue opposes it (each map on its own symmetric scale).",
    )


def faithfulness(config, workdir: Workdir, logits, orders: dict, xs, ys) -> dict:
    """Deletion curves of the predicted-class probability, one per attribution."""

    def deletion(x, y, a):
        return attr.deletion_curve(lambda z: jax.nn.softmax(logits(z))[y], x, a)

    curves = jax.jit(jax.vmap(deletion))
    # Host arrays: one compiled program for every order, wherever it was computed.
    orders = {name: np.asarray(a) for name, a in orders.items()}
    mean = {name: np.mean(curves(xs, ys, a), axis=0) for name, a in orders.items()}
    fraction = np.linspace(0.0, 1.0, xs.shape[1] + 1)
    areas = {name: float(attr.deletion_area(c)) for name, c in mean.items()}

    figure, ax = new_figure(size=(5.5, 4.0))
    for name, curve in mean.items():
        ax.plot(fraction, curve, label=f"{name} (area {areas[name]:.3f})")
    ax.set_xlabel("fraction of pixels set to the baseline (0)")
    ax.set_ylabel("predicted-class probability (mean)")
    ax.legend(fontsize=8)
    workdir.save_figure(
        figure,
        "deletion_curves",
        caption="Deletion curves: pixels removed in attribution order (highest first); "
        "a faithful attribution makes the probability fall fast.",
    )
    deletion_source = "Petsiuk et al. 2018 (RISE), deletion metric"
    workdir.check(
        "deletion area: integrated gradients",
        areas["integrated_gradients"],
        below=areas["random"],
        label="random order",
        source=deletion_source,
    )
    workdir.check(
        "deletion area: gradient x input",
        areas["gradient_x_input"],
        info="compare with IG",
        source=deletion_source,
    )
    return {"deletion_auc": areas}


def _classifier(config, workdir: Workdir, split) -> tuple[Callable, float]:
    """Train the MLP with ``training.fit``; returns ``logits(x)`` and test accuracy."""
    model = MLP((*config.hidden, 10))
    params = jax.jit(model.init)(jax.random.key(config.seed), jnp.zeros(64))

    @jax.jit
    def accuracy(params):
        predicted = jnp.argmax(model.apply(params, split.x_test), -1)
        return jnp.mean(predicted == split.y_test)

    result = fit(
        classification_loss(model.apply),
        params,
        optax.adam(config.learning_rate),
        (split.x_train, split.y_train),
        steps=config.train_steps,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_fn=lambda p: {"test_accuracy": accuracy(p)},
        eval_every=config.eval_every,
        **workdir.fit_options,
        name="classifier",
    )
    params = result.params
    return (lambda x: model.apply(params, x)), float(accuracy(params))


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    split = digits_for_classifier()
    logits, accuracy = _classifier(config, workdir, split)
    workdir.check(
        "test accuracy",
        accuracy,
        at_least=config.min_test_accuracy,
        source="tanh MLP on chainlab.data (digits protocol)",
    )

    def logit(x, y):
        return logits(x)[y]

    xs = jnp.asarray(split.x_test[: config.test_images])
    ys = jnp.argmax(logits(xs), axis=-1)  # explain the prediction
    results = {"test_accuracy": accuracy}
    results.update(convergence(config, workdir, logit, xs, ys))

    ig_batch = _per_image(
        logit, lambda f, x: attr.integrated_gradients(f, x, steps=config.ig_steps)
    )
    ig = ig_batch(xs, ys)
    grad, gxi = _per_image(
        logit, lambda f, x: (jax.grad(f)(x), attr.gradient_x_input(f, x))
    )(xs, ys)
    maps = {"gradient": grad, "gradient x input": gxi, f"IG ({config.ig_steps} GL)": ig}
    attribution_maps(config, workdir, maps, xs, ys)
    noise = np.random.default_rng(config.seed + 1).random(xs.shape, np.float32)
    orders = {"integrated_gradients": ig, "gradient_x_input": gxi, "random": noise}
    results.update(faithfulness(config, workdir, logits, orders, xs, ys))

    n = config.timing_images
    ms = median_step_ms(ig_batch, xs[:n], ys[:n], repeats=config.timing_repeats) / n
    workdir.check(
        f"ms per image, IG {config.ig_steps} Gauss-Legendre steps (batch {n})",
        ms,
        at_most=MS_PER_IMAGE_TARGET,
        source="10x Captum (benchmarks/ig_vs_captum.py); shared machine, noisy",
    )
    results["ms_per_image"] = ms
    return results

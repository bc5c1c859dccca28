"""Integrated gradients on digits: quadrature convergence, maps, deletion, speed.

A tanh MLP 64-128-128-10 is trained on digits (inputs x / 16, DESIGN.md protocol); its
predicted class's logit is explained from the all-zero image with
``chainlab.attribution.integrated_gradients``. Four results:

1. Convergence: the relative completeness error
   ``|sum_i IG_i - (F(x) - F(0))| / |F(x) - F(0)|``, median over the test images,
   against the number of steps for every quadrature rule, and where each first drops
   below the 5% the IG paper (Sundararajan et al. 2017, Sec. 5) asks for. Captum's
   trapezoid weights, which are ours times ``(n - 1) / n``, are shown next to the true
   trapezoid rule.
2. Attribution maps of test digits: plain gradient, gradient x input, IG.
3. Faithfulness: deletion curves (pixels set to the baseline in attribution order, the
   predicted class's softmax probability watched) for IG, gradient x input and a random
   order, with the area under each curve (smaller is more faithful).
4. Speed: milliseconds per image for 50-step Gauss-Legendre IG, vmapped over a batch
   and jitted.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab import attribution as attr
from chainlab.data import digits
from chainlab.models import MLP
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.training import fit, median_step_ms

SOURCE = "issue 6"
PAPER_SOURCE = "Sundararajan et al. 2017, Sec. 5"
# The IG paper's advice: attributions should add up to within 5% of F(x) - F(x').
PAPER_TOLERANCE = 0.05
# 50-step Gauss-Legendre on a smooth tanh network leaves float32 rounding, ~1e-6; any
# real quadrature error at 50 nodes would be orders of magnitude above 1e-4.
GAUSS_LEGENDRE_50_TARGET = 1e-4
# Issue 6: at least 10x Captum's ~0.6 ms per image on this machine class.
MS_PER_IMAGE_TARGET = 0.06

Logit = Callable[[jax.Array, jax.Array], jax.Array]


def train_classifier(
    config: ml_collections.ConfigDict, workdir: Workdir | None = None
) -> tuple[MLP, dict, float]:
    """Train the digits classifier; returns the model, its params and test accuracy."""
    split = digits()
    x_train, x_test = split.x_train / 16.0, split.x_test / 16.0
    model = MLP((*config.hidden, 10))
    params = model.init(jax.random.key(config.seed), jnp.zeros(64))

    def loss_fn(params, batch, key):
        x, y = batch
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def accuracy(params):
        return jnp.mean(jnp.argmax(model.apply(params, x_test), -1) == split.y_test)

    result = fit(
        loss_fn,
        params,
        optax.adam(config.learning_rate),
        (x_train, split.y_train),
        steps=config.train_steps,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_fn=lambda p: {"test_accuracy": accuracy(p)},
        eval_every=config.eval_every,
        **workdir.fit_options,
        name="classifier",
    )
    return model, result.params, float(accuracy(result.params))


def _median_rel_errors(
    logit: Logit, xs: jax.Array, ys: jax.Array, method: str, steps: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Median over images of the relative completeness error, ours and Captum-weighted.

    One compiled program evaluates every step count (compiling per count would cost
    more than computing). Captum's trapezoid weights are ours times ``(n - 1) / n``,
    so its attribution sum is ours scaled by that factor.
    """

    @jax.jit
    def sums_and_change(xs, ys):
        def one(x, y):
            def f(z):
                return logit(z, y)

            sums = [
                jnp.sum(attr.integrated_gradients(f, x, steps=n, method=method))
                for n in steps
            ]
            return jnp.stack(sums), f(x) - f(jnp.zeros_like(x))

        return jax.vmap(one)(xs, ys)

    sums, change = jax.device_get(sums_and_change(xs, ys))
    sums, change = sums.astype(np.float64), change.astype(np.float64)[:, None]
    n = np.asarray(steps, np.float64)[None, :]
    ours = np.abs(sums - change) / np.abs(change)
    captum = np.abs(sums * (n - 1) / n - change) / np.abs(change)
    return np.median(ours, axis=0), np.median(captum, axis=0)


def convergence(
    config: ml_collections.ConfigDict,
    workdir: Workdir,
    logit: Logit,
    xs: jax.Array,
    ys: jax.Array,
) -> dict:
    """Median relative completeness error vs steps for every rule; table and plot."""
    errors: dict[str, dict[int, float]] = {}
    captum_trapezoid: dict[int, float] = {}
    first_below: dict[str, int | None] = {}
    for method in attr.METHODS:
        smallest = 2 if method == "riemann_trapezoid" else 1
        grid = tuple(n for n in config.steps_grid if n >= smallest)
        ours, captum = _median_rel_errors(logit, xs, ys, method, grid)
        errors[method] = dict(zip(grid, ours.tolist(), strict=True))
        if method == "riemann_trapezoid":
            captum_trapezoid = dict(zip(grid, captum.tolist(), strict=True))
        below = [i for i, e in enumerate(ours) if e < PAPER_TOLERANCE]
        first = grid[below[0]] if below else None
        if below and below[0] > 0 and config.refine_first_below:
            between = tuple(range(grid[below[0] - 1] + 1, first))
            if between:
                refined, _ = _median_rel_errors(logit, xs, ys, method, between)
                inside = [
                    n
                    for n, e in zip(between, refined, strict=True)
                    if e < PAPER_TOLERANCE
                ]
                first = inside[0] if inside else first
        first_below[method] = first

    _convergence_table(config, workdir, errors, captum_trapezoid, first_below)
    _convergence_figure(workdir, errors, captum_trapezoid)

    at = config.ig_steps
    if at in errors["gausslegendre"]:
        workdir.check(
            f"median rel. completeness error, Gauss-Legendre {at} steps",
            errors["gausslegendre"][at],
            target=f"< {GAUSS_LEGENDRE_50_TARGET:g} (paper: < 5%)",
            source=PAPER_SOURCE,
            passed=errors["gausslegendre"][at] < GAUSS_LEGENDRE_50_TARGET,
        )
    grid_note = "" if config.refine_first_below else " (first grid point)"
    for method, first in first_below.items():
        workdir.check(
            f"first steps with median rel. error < 5%: {method}{grid_note}",
            "never" if first is None else first,
            target="(measured)",
            source=PAPER_SOURCE,
        )

    def rank(method):
        first = first_below[method]
        return np.inf if first is None else first

    fast = min(rank("gausslegendre"), rank("riemann_middle"))
    slow = min(rank("riemann_left"), rank("riemann_right"))
    workdir.check(
        "Gauss-Legendre and midpoint reach 5% before left/right Riemann",
        f"{fast} vs {slow}",
        target="fewer steps",
        source=SOURCE,
        passed=bool(
            max(rank("gausslegendre"), rank("riemann_middle")) < slow
            and np.isfinite(fast)
        ),
    )
    return {
        "completeness_rel_error": {
            m: {str(n): e for n, e in errs.items()} for m, errs in errors.items()
        },
        "completeness_rel_error_captum_trapezoid": {
            str(n): e for n, e in captum_trapezoid.items()
        },
        "first_steps_below_5pct": first_below,
    }


def _convergence_table(config, workdir, errors, captum_trapezoid, first_below):
    methods = list(attr.METHODS)
    header = "| steps | " + " | ".join(methods) + " | trapezoid, Captum weights |"
    lines = [
        f"**Median relative completeness error** over {config.test_images} test "
        "images (predicted class logit, zero baseline, float32). Captum's trapezoid "
        "weights sum to (n-1)/n, so its error falls only as 1/n (last column), "
        "while the true trapezoid rule falls as 1/n^2.",
        "",
        header,
        "|" + "---|" * (len(methods) + 2),
    ]
    for n in config.steps_grid:
        cells = [f"{errors[m][n]:.2e}" if n in errors[m] else "-" for m in methods] + [
            f"{captum_trapezoid[n]:.2e}" if n in captum_trapezoid else "-"
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    firsts = [
        "never" if first_below[m] is None else str(first_below[m]) for m in methods
    ]
    lines.append("| **first < 5%** | " + " | ".join(firsts) + " | |")
    workdir.note("\n".join(lines))


def _convergence_figure(workdir, errors, captum_trapezoid):
    figure, ax = new_figure(size=(6.5, 4.2))
    floor = 1e-9  # exact zeros (float32 luck) would vanish on a log axis
    for method, errs in errors.items():
        ax.loglog(
            list(errs), np.maximum(list(errs.values()), floor), marker=".", label=method
        )
    ax.loglog(
        list(captum_trapezoid),
        np.maximum(list(captum_trapezoid.values()), floor),
        linestyle="--",
        color="gray",
        label="trapezoid, Captum weights",
    )
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


def _attributions(logit: Logit, steps: int) -> Callable:
    """Jitted batch of (gradient, gradient x input, IG) for per-image classes."""

    @jax.jit
    def explain(xs, ys):
        def one(x, y):
            def f(z):
                return logit(z, y)

            return (
                jax.grad(f)(x),
                attr.gradient_x_input(f, x),
                attr.integrated_gradients(f, x, steps=steps),
            )

        return jax.vmap(one)(xs, ys)

    return explain


def attribution_maps(config, workdir, explain, xs, ys) -> None:
    """Figure: test digits next to gradient, gradient x input and IG maps."""
    k = config.map_digits
    grad, gxi, ig = jax.device_get(explain(xs[:k], ys[:k]))
    rows = [
        ("input", np.asarray(xs[:k])),
        ("gradient", grad),
        ("gradient x input", gxi),
        (f"IG ({config.ig_steps} GL steps)", ig),
    ]
    figure, axes = new_figure(len(rows), k, size=(1.3 * k, 1.45 * len(rows)))
    for r, (name, maps) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            image = maps[c].reshape(8, 8)
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


def faithfulness(config, workdir, logits, explain, xs, ys) -> dict:
    """Deletion curves of the class probability for IG, gradient x input, random."""
    _, gxi, ig = explain(xs, ys)
    noise = jax.random.uniform(jax.random.key(config.seed + 1), xs.shape)

    @jax.jit
    def curves(xs, ys, order):
        def one(x, y, a):
            def probability(z):
                return jax.nn.softmax(logits(z))[y]

            return attr.deletion_curve(probability, x, a)

        return jax.vmap(one)(xs, ys, order)

    orders = {"integrated_gradients": ig, "gradient_x_input": gxi, "random": noise}
    mean_curves = {
        name: np.asarray(jnp.mean(curves(xs, ys, order), axis=0))
        for name, order in orders.items()
    }
    fraction = np.linspace(0.0, 1.0, xs.shape[1] + 1)
    areas = {name: float(np.trapezoid(c, fraction)) for name, c in mean_curves.items()}

    figure, ax = new_figure(size=(5.5, 4.0))
    for name, curve in mean_curves.items():
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
    workdir.check(
        "deletion area: integrated gradients",
        areas["integrated_gradients"],
        target=f"< random ({areas['random']:.3f})",
        source=SOURCE,
        passed=areas["integrated_gradients"] < areas["random"],
    )
    workdir.check(
        "deletion area: gradient x input",
        areas["gradient_x_input"],
        target="(compare with IG)",
        source=SOURCE,
    )
    return {"deletion_auc": areas}


def speed(config, workdir, logit, xs, ys) -> dict:
    """Milliseconds per image of jitted, vmapped 50-step Gauss-Legendre IG."""

    @jax.jit
    def batch(xs, ys):
        def one(x, y):
            return attr.integrated_gradients(
                lambda z: logit(z, y), x, steps=config.ig_steps
            )

        return jax.vmap(one)(xs, ys)

    n = config.timing_images
    ms = median_step_ms(batch, xs[:n], ys[:n], repeats=config.timing_repeats) / n
    workdir.check(
        f"ms per image, IG {config.ig_steps} Gauss-Legendre steps (batch {n})",
        ms,
        target=f"<= {MS_PER_IMAGE_TARGET} (10x Captum's ~0.6 ms)",
        source=SOURCE + "; machine shared, timing noisy",
        passed=ms <= MS_PER_IMAGE_TARGET,
    )
    return {"ms_per_image": ms}


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    model, params, accuracy = train_classifier(config, workdir)
    workdir.check(
        "test accuracy", accuracy, target="~0.97 (MLP on digits)", source=SOURCE
    )

    def logits(x):
        return model.apply(params, x)

    def logit(x, y):
        return logits(x)[y]

    split = digits()
    xs = jnp.asarray(split.x_test[: config.test_images] / 16.0)
    ys = jnp.argmax(logits(xs), axis=-1)  # explain the prediction

    results = {"test_accuracy": accuracy}
    results.update(convergence(config, workdir, logit, xs, ys))
    explain = _attributions(logit, config.ig_steps)
    attribution_maps(config, workdir, explain, xs, ys)
    results.update(faithfulness(config, workdir, logits, explain, xs, ys))
    results.update(speed(config, workdir, logit, xs, ys))
    return results

"""Batch norm couples the samples of a batch; instance and layer norm do not.

Three questions, answered numerically (float64 unless stated), the maths in
``chainlab.normalization``:

1. Cross-sample Jacobian. For one batch ``x (N, L, C)`` and each layer, the blocks
   ``J[a, b] = d y[a] / d x[b]`` by ``jax.jacrev`` (``cross_sample_jacobian``). The
   off-diagonal blocks (a != b) are the coupling: their Frobenius norm is the headline
   figure; batch norm's blocks are compared with the closed form
   (``batch_norm_jacobian``). A heatmap shows every block norm.
2. Batch-norm gradient identities (``batch_norm_grad_identities``): for any upstream
   gradient the input gradient sums to zero over the batch and is orthogonal to xhat
   when eps = 0 (for eps > 0 the inner product has a closed form, also checked).
   Random draws, in float32 and float64.
3. Per-example gradients of x -> Dense -> norm -> tanh -> Dense with a squared error,
   three ways (``per_example_decompositions``): ``jacrev`` of the per-sample losses
   (the in-context gradient), ``vmap(grad)`` over batches of one, and ``vmap(grad)``
   with the statistics shared through ``axis_name``. For layer norm all three agree.
   For batch norm a batch of one normalizes to exactly 0 (no first-layer gradient),
   and the ``axis_name`` rows sum to the batch gradient but split it by input path, so
   per-example clipping or weighting of them is not per-example in the usual sense.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from chainlab.data import channel_features
from chainlab.normalization import (
    batch_norm,
    batch_norm_grad_identities,
    batch_norm_jacobian,
    cross_sample_block_norms,
    cross_sample_jacobian,
    instance_norm,
    layer_norm,
    per_example_decompositions,
    per_example_grads,
    random_affine,
)
from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir

SOURCE = "Ioffe & Szegedy 2015; Ulyanov et al. 2016; Ba et al. 2016"
CHAIN_RULE = "chain rule through the normalization statistics"
NORMS = {norm.__name__: norm for norm in (batch_norm, instance_norm, layer_norm)}
# float64 identities and closed forms hold to round-off: ~1e-16 relative, times the
# few hundred terms of a sum.
F64_TOL = 1e-12
# float32 round-off of the same sums (machine epsilon 1.2e-7, times a few terms).
F32_TOL = 1e-5
# Only batch norm couples samples; its Jacobian is the closed form to round-off.
COUPLING_EXPECTED = {
    "batch_norm_cross_sample_norm": {"above": 0},
    "instance_norm_cross_sample_norm": {"equals": 0.0},
    "layer_norm_cross_sample_norm": {"equals": 0.0},
    "batch_norm_jacobian_closed_form_max_abs_error": {
        "at_most": F64_TOL,
        "label": "float64",
    },
}


def coupling(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Cross-sample Jacobian block norms of the three layers, and the heatmap."""
    kx, ka = jax.random.split(jax.random.key(config.seed))
    shape = (config.batch_size, config.spatial, config.channels)
    x = channel_features(kx, shape, dtype=jnp.float64)
    scale, offset = random_affine(ka, config.channels, dtype=jnp.float64)
    results, block_norms, rows = {}, {}, []
    for name, fn in NORMS.items():
        norm_fn = functools.partial(fn, scale=scale, offset=offset, eps=config.eps)
        jac = jax.jit(functools.partial(cross_sample_jacobian, norm_fn))(x)
        norms = cross_sample_block_norms(jac)
        block_norms[name] = np.asarray(norms)
        diagonal = float(jnp.linalg.norm(jnp.diagonal(norms)))
        cross = float(jnp.linalg.norm(norms * (1 - jnp.eye(len(norms)))))  # a != b
        results[f"{name}_cross_sample_norm"] = cross
        rows.append(
            [name, f"{cross:.4g}", f"{diagonal:.4g}", f"{cross / diagonal:.3g}"]
        )
        if name == "batch_norm":
            want = batch_norm_jacobian(x, scale, eps=config.eps)
            results["batch_norm_jacobian_closed_form_max_abs_error"] = float(
                jnp.max(jnp.abs(jac - want))
            )
    header = ["layer", "off-diagonal (a != b)", "diagonal (a = b)", "ratio"]
    workdir.note(
        f"**Cross-sample coupling** for x of shape {shape} (float64, eps = "
        f"{config.eps}): Frobenius norm of all off-diagonal blocks d y[a] / d x[b], "
        "a != b, against the diagonal blocks.\n\n" + markdown_table(header, rows)
    )
    for key, expected in COUPLING_EXPECTED.items():
        workdir.check(key, results[key], **expected, source=SOURCE)
    _heatmap(block_norms, workdir)
    return results


def _heatmap(block_norms: dict[str, np.ndarray], workdir: Workdir) -> None:
    positive = np.concatenate([norms[norms > 0] for norms in block_norms.values()])
    low, high = np.log10(positive.min()), np.log10(positive.max())
    fig, axes = new_figure(1, len(block_norms), size=(4.0 * len(block_norms), 3.6))
    for ax, (name, norms) in zip(axes, block_norms.items(), strict=True):
        shown = np.ma.masked_equal(norms, 0.0)
        image = ax.imshow(np.ma.log10(shown), vmin=low, vmax=high, cmap="viridis")
        ticks = range(norms.shape[0])
        ax.set(title=name, xticks=ticks, yticks=ticks, xlabel="input sample b")
        ax.set_ylabel("output sample a")
    fig.colorbar(image, ax=axes, label="log10 ||d y[a] / d x[b]||_F")
    workdir.save_figure(
        fig,
        "cross_sample_jacobian",
        caption="Frobenius norms of the Jacobian blocks d y[a] / d x[b] (log scale); "
        "white cells are exact zeros. Only batch norm has off-diagonal blocks.",
    )


def identities(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Batch-norm input gradients sum to 0 and are orthogonal to xhat (eps = 0)."""
    shape = (config.batch_size, config.spatial, config.channels)
    results = {}
    for dtype, tol in ((jnp.float32, F32_TOL), (jnp.float64, F64_TOL)):
        label = jnp.dtype(dtype).name

        @jax.jit
        def worst(keys, eps, dtype=dtype):  # maxima over draws and channels
            def trial(draw):
                kx, kg, ka = jax.random.split(draw, 3)
                g = jax.random.normal(kg, shape, dtype)
                scale, _ = random_affine(ka, shape[-1], dtype=dtype)
                x = channel_features(kx, shape, dtype=dtype)
                return jnp.stack(batch_norm_grad_identities(x, scale, g, eps=eps))

            return jnp.max(jax.vmap(trial)(keys), axis=(0, 2))

        keys = jax.random.split(jax.random.key(config.seed + 1), config.identity_trials)
        exact, with_eps = (np.asarray(worst(keys, eps)) for eps in (0.0, config.eps))
        results[f"batch_norm_grad_sum_rel_{label}"] = float(max(exact[0], with_eps[0]))
        results[f"batch_norm_grad_xhat_cosine_eps0_{label}"] = float(exact[1])
        results[f"batch_norm_grad_xhat_cosine_eps_{label}"] = float(with_eps[1])
        results[f"batch_norm_grad_xhat_formula_error_{label}"] = float(with_eps[2])
        for key, quantity in (
            ("batch_norm_grad_sum_rel", "abs(sum_b dL/dx_b) / sum_b abs(dL/dx_b)"),
            ("batch_norm_grad_xhat_cosine_eps0", "cos(dL/dx, xhat), eps = 0"),
            ("batch_norm_grad_xhat_formula_error", "eps > 0: closed form"),
        ):
            key = f"{key}_{label}"
            workdir.check(key, results[key], at_most=tol, label=quantity, source=SOURCE)
    workdir.note(
        f"With eps = {config.eps} the cosine between dL/dx and xhat is not 0 but "
        "scale / s * eps / (var + eps) * <g, xhat> / (||dL/dx|| ||xhat||): measured "
        f"{results['batch_norm_grad_xhat_cosine_eps_float64']:.3g} (float64), and the "
        "formula matches it to "
        f"{results['batch_norm_grad_xhat_formula_error_float64']:.3g}. Maxima over "
        f"{config.identity_trials} random (x, dL/dy) draws and all channels."
    )
    return results


def _init_model(key: jax.Array, config: ml_collections.ConfigDict) -> dict:
    """Weights (in, out) with unit-variance fan-in scaling; biases 0."""
    k1, k2, k3 = jax.random.split(key, 3)
    d, h, f64 = config.in_features, config.hidden, jnp.float64
    scale, offset = random_affine(k3, h, dtype=f64)
    w1 = jax.random.normal(k1, (d, h), f64) / np.sqrt(d)
    w2 = jax.random.normal(k2, (h,), f64) / np.sqrt(h)
    b1 = jnp.zeros((h,), f64)
    return {"w1": w1, "b1": b1, "scale": scale, "offset": offset, "w2": w2, "b2": 0.0}


def _losses(params, batch, *, norm: str, eps: float, axis_name: str | None = None):
    """Per-example squared errors (B,) of x (B, D) -> Dense -> norm -> tanh -> Dense."""
    x, y = batch
    h = x @ params["w1"] + params["b1"][None, :]
    shared = {"axis_name": axis_name} if norm == "batch_norm" else {}
    h = NORMS[norm](h, params["scale"], params["offset"], eps=eps, **shared)
    return 0.5 * jnp.square(jnp.tanh(h) @ params["w2"] + params["b2"] - y)


_PER_EXAMPLE_COLUMNS = {
    "jacrev_sum_rel_error": "jacrev: sum vs batch grad",
    "vmap_alone_sum_rel_error": "vmap alone: sum vs batch grad",
    "vmap_axis_name_sum_rel_error": "vmap axis_name: sum vs batch grad",
    "vmap_alone_vs_jacrev_rel_diff": "vmap alone vs jacrev rows",
    "vmap_axis_name_vs_jacrev_rel_diff": "vmap axis_name vs jacrev rows",
    "vmap_alone_first_layer_grad_max_abs": "vmap alone: max abs d/d(w1, b1)",
    "other_sample_sensitivity": "change of row 0 when x[1] moves",
}
# Batch norm: a batch of one normalizes to 0 (no first-layer gradient) and is not the
# batch gradient; axis_name rows sum to it but are not d loss_i / d theta, and row 0
# depends on x[1]. Layer norm: all decompositions agree, no coupling (row 0 may move by
# round-off: the two gradients are separately compiled parts of one program).
_PER_EXAMPLE_EXPECTED = [
    ("batch_norm", "vmap_alone_first_layer_grad_max_abs", "equals", 0.0),
    ("batch_norm", "vmap_alone_sum_rel_error", "above", 0.1),
    ("batch_norm", "vmap_axis_name_sum_rel_error", "at_most", F64_TOL),
    ("batch_norm", "vmap_axis_name_vs_jacrev_rel_diff", "above", 0.01),
    ("batch_norm", "other_sample_sensitivity", "above", F64_TOL),
    ("layer_norm", "vmap_alone_vs_jacrev_rel_diff", "at_most", F64_TOL),
    ("layer_norm", "vmap_axis_name_vs_jacrev_rel_diff", "at_most", F64_TOL),
    ("layer_norm", "other_sample_sensitivity", "at_most", F64_TOL),
]


def _rel(a, b) -> jax.Array:
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


def _flat(grads):
    """Per-example gradients (pytree, leading axis B) as rows (B, P)."""
    return jax.vmap(lambda tree: ravel_pytree(tree)[0])(grads)


@functools.partial(jax.jit, static_argnames=("norm", "eps"))
def _decompositions(params, x, y, nudge, *, norm: str, eps: float):
    """One layer's row of the table, and each method's first-layer row norms."""
    losses = functools.partial(_losses, norm=norm, eps=eps)
    ways = per_example_decompositions(losses, params, (x, y))
    grads = dict(zip(("jacrev", "vmap alone", "vmap axis_name"), ways[:3], strict=True))
    moved_grads = per_example_grads(losses, params, (x.at[1].add(nudge), y))
    jacrev, alone, named, moved = (_flat(g) for g in (*ways[:3], moved_grads))
    batch_grad = ravel_pytree(ways.batch)[0]
    first_layer = jnp.concatenate([ways.alone["w1"].ravel(), ways.alone["b1"].ravel()])
    row = {
        "jacrev_sum_rel_error": _rel(jacrev.sum(0), batch_grad),
        "vmap_alone_sum_rel_error": _rel(alone.sum(0), batch_grad),
        "vmap_axis_name_sum_rel_error": _rel(named.sum(0), batch_grad),
        "vmap_alone_vs_jacrev_rel_diff": _rel(alone, jacrev),
        "vmap_axis_name_vs_jacrev_rel_diff": _rel(named, jacrev),
        "vmap_alone_first_layer_grad_max_abs": jnp.abs(first_layer).max(),
        "other_sample_sensitivity": _rel(moved[0], jacrev[0]),  # x[1] nudged
    }
    return row, {k: jnp.linalg.norm(g["w1"], axis=(1, 2)) for k, g in grads.items()}


def per_example(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Three per-example gradient decompositions, with batch norm and layer norm."""
    keys = jax.random.split(jax.random.key(config.seed + 2), 4)
    b, d = config.per_example_batch, config.in_features
    x = channel_features(keys[0], (b, d), dtype=jnp.float64)
    y = jnp.sin(x @ jax.random.normal(keys[1], (d,), jnp.float64))
    params = _init_model(keys[2], config)
    nudge = 0.5 * jax.random.normal(keys[3], (d,), jnp.float64)
    results, first_layer = {}, {}
    for norm in ("batch_norm", "layer_norm"):
        row, first_layer[norm] = jax.device_get(
            _decompositions(params, x, y, nudge, norm=norm, eps=config.eps)
        )
        results[norm] = {key: float(value) for key, value in row.items()}
    _per_example_report(results, config, workdir)
    _per_example_figure(first_layer, workdir)
    return {"per_example": results}


def _per_example_report(results: dict, config, workdir: Workdir) -> None:
    rows = [
        [norm, *(f"{row[key]:.3g}" for key in _PER_EXAMPLE_COLUMNS)]
        for norm, row in results.items()
    ]
    workdir.note(
        f"**Per-example gradients** ({config.per_example_batch} examples, float64). "
        "Relative errors are ||a - b|| / ||b||; *jacrev*: rows d loss_i / d theta of "
        "the batch model; *vmap alone*: `vmap(grad)` over examples, each a batch of "
        "one; *vmap axis_name*: `vmap(grad, axis_name=...)` with shared statistics."
        "\n\n" + markdown_table(["layer", *_PER_EXAMPLE_COLUMNS.values()], rows)
    )
    for norm, key, kind, threshold in _PER_EXAMPLE_EXPECTED:
        value = results[norm][key]
        workdir.check(f"{norm}_{key}", value, **{kind: threshold}, source=CHAIN_RULE)


def _per_example_figure(first_layer: dict, workdir: Workdir) -> None:
    fig, axes = new_figure(1, len(first_layer), size=(5.0 * len(first_layer), 3.4))
    for ax, (norm, methods) in zip(axes, first_layer.items(), strict=True):
        width = 0.8 / len(methods)
        for i, (method, values) in enumerate(methods.items()):
            at = np.arange(values.size) + (i - 1) * width
            ax.bar(at, values, width, label=method)
        ax.set(title=norm, xticks=range(values.size), xlabel="example i")
        ax.set_ylabel("norm of row i, w1 part")
    axes[0].legend()
    workdir.save_figure(
        fig,
        "per_example_gradients",
        caption="First-layer per-example gradient norms by three decompositions. "
        "Batch norm: a batch of one gives exactly zero; axis_name rows differ from "
        "the per-sample loss gradients. Layer norm: all three coincide.",
    )


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(True):
        results = coupling(config, workdir)
        results.update(identities(config, workdir))
        results.update(per_example(config, workdir))
    return results

"""Batch norm couples the samples of a batch; instance and layer norm do not.

Three questions, answered numerically (float64 unless stated):

1. Cross-sample Jacobian. For one input batch ``x (N, L, C)`` and each layer, the
   blocks ``J[a, b] = d y[a] / d x[b]`` from ``chainlab.normalization.
   cross_sample_jacobian`` (``jax.jacrev``). The off-diagonal blocks (a != b) are
   the coupling: their Frobenius norm is the headline figure, and batch norm's blocks
   are compared with the closed form ``scale / s * (delta - 1/M - xhat xhat^T / M)``
   (M = N * L positions per channel). A heatmap shows every block norm.
2. Batch-norm gradient identities. For any upstream gradient g = dL/dy, the input
   gradient sums to zero over the batch, and it is orthogonal to the normalized input
   xhat when eps = 0 (with eps > 0 the inner product is
   ``scale / s * eps / (var + eps) * <g, xhat>``, also checked). Random draws, in
   float32 and float64.
3. Per-example gradients of a small model x -> Dense -> norm -> tanh -> Dense with a
   squared error, in three ways: ``jax.jacrev`` of the vector of per-sample losses (row
   i = d loss_i / d theta, the in-context gradient); ``vmap(grad)`` over single
   examples (each a batch of one); and ``vmap(grad)`` with the batch statistics
   shared through ``axis_name`` (as Flax's ``BatchNorm(axis_name=...)``). For layer
   norm all three agree and sum to the batch gradient. For batch norm a batch of one
   normalizes every hidden unit to exactly 0, so the first layer gets no gradient at
   all; with ``axis_name`` the rows sum to the batch gradient but are a different
   split of it (row i collects the gradient flowing through sample i's input, from
   every sample's loss), so per-example clipping or importance weighting of those
   rows is not per-example in the usual sense. The in-context gradient of one sample
   also changes when another sample changes.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from chainlab.normalization import (
    batch_norm,
    batch_norm_stats,
    cross_sample_block_norms,
    cross_sample_jacobian,
    instance_norm,
    layer_norm,
)
from chainlab.runner.plotting import new_figure
from chainlab.runner.report import markdown_table
from chainlab.runner.workdir import Workdir

SOURCE = "Ioffe & Szegedy 2015; Ulyanov et al. 2016; Ba et al. 2016"
CHAIN_RULE = "chain rule through the normalization statistics"
NORMS = {
    "batch_norm": batch_norm,
    "instance_norm": instance_norm,
    "layer_norm": layer_norm,
}
# float64 identities and closed forms hold to round-off: ~1e-16 relative, times the
# few hundred terms of a sum.
F64_TOL = 1e-12
# float32 round-off of the same sums (machine epsilon 1.2e-7, times a few terms).
F32_TOL = 1e-5


def _input(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """A batch with a different mean and spread per channel, as real features have."""
    kx, ks, km = jax.random.split(key, 3)
    channel = (1,) * (len(shape) - 1) + (shape[-1],)  # broadcasts over the batch
    spread = jax.random.uniform(ks, channel, dtype, 0.5, 3.0)
    return jax.random.normal(kx, shape, dtype) * spread + jax.random.normal(
        km, channel, dtype
    )


def _affine(key: jax.Array, channels: int, dtype) -> tuple[jax.Array, jax.Array]:
    ks, ko = jax.random.split(key)
    return (
        jax.random.uniform(ks, (channels,), dtype, 0.5, 2.0),
        jax.random.normal(ko, (channels,), dtype),
    )


def _batch_norm_jacobian_closed_form(x: np.ndarray, scale, eps: float) -> np.ndarray:
    """J[a, b, l, c, l', c'] for x (N, L, C): per channel, positions m = (a, l)."""
    n, length, channels = x.shape
    flat = x.reshape(n * length, channels)
    mean = flat.mean(axis=0)
    s = np.sqrt(((flat - mean) ** 2).mean(axis=0) + eps)
    xhat = (flat - mean) / s
    m = n * length
    inner = np.eye(m)[:, :, None] - 1.0 / m - xhat[:, None, :] * xhat[None, :, :] / m
    per_channel = inner * (np.asarray(scale) / s)[None, None, :]  # (M, M, C)
    jac = np.einsum("pqc,cd->pcqd", per_channel, np.eye(channels))  # delta(c, c')
    jac = jac.reshape(n, length, channels, n, length, channels)
    return jac.transpose(0, 3, 1, 2, 4, 5)


def coupling(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Cross-sample Jacobian block norms of the three layers, and the heatmap."""
    kx, ka = jax.random.split(jax.random.key(config.seed))
    shape = (config.batch_size, config.spatial, config.channels)
    x = _input(kx, shape, jnp.float64)
    scale, offset = _affine(ka, config.channels, jnp.float64)
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
            want = _batch_norm_jacobian_closed_form(np.asarray(x), scale, config.eps)
            results["batch_norm_jacobian_closed_form_max_abs_error"] = float(
                np.max(np.abs(np.asarray(jac) - want))
            )
    header = ["layer", "off-diagonal (a != b)", "diagonal (a = b)", "ratio"]
    workdir.note(
        f"**Cross-sample coupling** for x of shape {shape} (float64, eps = "
        f"{config.eps}): Frobenius norm of all off-diagonal blocks d y[a] / d x[b], "
        "a != b, against the diagonal blocks.\n\n" + markdown_table(header, rows)
    )
    check = functools.partial(workdir.check, source=SOURCE)
    check(
        "batch_norm_cross_sample_norm", results["batch_norm_cross_sample_norm"], above=0
    )
    for name in ("instance_norm", "layer_norm"):
        check(
            f"{name}_cross_sample_norm",
            results[f"{name}_cross_sample_norm"],
            equals=0.0,
        )
    key = "batch_norm_jacobian_closed_form_max_abs_error"
    check(key, results[key], at_most=F64_TOL, label="float64")
    _heatmap(block_norms, workdir)
    return results


def _heatmap(block_norms: dict[str, np.ndarray], workdir: Workdir) -> None:
    positive = np.concatenate([norms[norms > 0] for norms in block_norms.values()])
    low, high = np.log10(positive.min()), np.log10(positive.max())
    fig, axes = new_figure(1, len(block_norms), size=(4.0 * len(block_norms), 3.6))
    image = None
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
    axes = (0, 1)
    results = {}
    for dtype, tol in ((jnp.float32, F32_TOL), (jnp.float64, F64_TOL)):
        label = jnp.dtype(dtype).name

        @jax.jit
        def trial(key, eps, dtype=dtype):
            kx, kg, ka = jax.random.split(key, 3)
            x = _input(kx, shape, dtype)
            g = jax.random.normal(kg, shape, dtype)
            scale, offset = _affine(ka, shape[-1], dtype)
            _, pullback = jax.vjp(lambda x: batch_norm(x, scale, offset, eps=eps), x)
            (grad,) = pullback(g)
            mean, var = batch_norm_stats(x)
            lead = (1, 1, shape[-1])
            s = jnp.sqrt(var + eps)
            xhat = (x - mean.reshape(lead)) / s.reshape(lead)
            # Net sum relative to the total mass of the gradient, per channel.
            sum_rel = jnp.abs(jnp.sum(grad, axes)) / jnp.sum(jnp.abs(grad), axes)
            inner = jnp.sum(grad * xhat, axes)
            norms = jnp.sqrt(jnp.sum(grad**2, axes) * jnp.sum(xhat**2, axes))
            predicted = scale / s * eps / (var + eps) * jnp.sum(g * xhat, axes)
            formula_rel = jnp.abs(inner - predicted) / norms
            return (
                jnp.max(sum_rel),
                jnp.max(jnp.abs(inner) / norms),
                jnp.max(formula_rel),
            )

        keys = jax.random.split(jax.random.key(config.seed + 1), config.identity_trials)
        exact = np.max(np.stack([trial(k, 0.0) for k in keys]), axis=0)
        with_eps = np.max(np.stack([trial(k, config.eps) for k in keys]), axis=0)
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
    k1, k2, k3 = jax.random.split(key, 3)
    d, h = config.in_features, config.hidden
    scale, offset = _affine(k3, h, jnp.float64)
    w1 = jax.random.normal(k1, (d, h), jnp.float64) / np.sqrt(d)
    w2 = jax.random.normal(k2, (h,), jnp.float64) / np.sqrt(h)
    zeros = jnp.zeros((h,), jnp.float64)
    return {
        "w1": w1,
        "b1": zeros,
        "scale": scale,
        "offset": offset,
        "w2": w2,
        "b2": 0.0,
    }


def _predict(params, x, norm: str, eps: float, axis_name: str | None = None):
    """x (B, D) -> (B,), or x (D,) -> () inside vmap with axis_name."""
    h = x @ params["w1"] + params["b1"].reshape((1,) * (x.ndim - 1) + (-1,))
    affine = (params["scale"], params["offset"])
    if norm == "batch_norm":
        h = batch_norm(h, *affine, eps=eps, axis_name=axis_name)
    else:
        h = layer_norm(h, *affine, eps=eps)
    return jnp.tanh(h) @ params["w2"] + params["b2"]


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
# depends on x[1]. Layer norm: all decompositions agree, no coupling.
_PER_EXAMPLE_EXPECTED = [
    ("batch_norm", "vmap_alone_first_layer_grad_max_abs", "equals", 0.0),
    ("batch_norm", "vmap_alone_sum_rel_error", "above", 0.1),
    ("batch_norm", "vmap_axis_name_sum_rel_error", "at_most", F64_TOL),
    ("batch_norm", "vmap_axis_name_vs_jacrev_rel_diff", "above", 0.01),
    ("batch_norm", "other_sample_sensitivity", "above", 0.0),
    ("layer_norm", "vmap_alone_vs_jacrev_rel_diff", "at_most", F64_TOL),
    ("layer_norm", "vmap_axis_name_vs_jacrev_rel_diff", "at_most", F64_TOL),
    ("layer_norm", "other_sample_sensitivity", "equals", 0.0),
]


@functools.partial(jax.jit, static_argnames=("norm", "eps"))
def _decompositions(params, x, y, nudge, *, norm: str, eps: float):
    """Per-example gradient rows (B, P) three ways, their targets, first-layer norms."""

    def losses(params, x):
        return 0.5 * jnp.square(_predict(params, x, norm, eps) - y)

    def alone(params, xi, yi):  # one example as a batch of one, xi (1, D)
        return 0.5 * jnp.sum(jnp.square(_predict(params, xi, norm, eps) - yi))

    def named(params, xi, yi):  # one example xi (D,), statistics via axis_name
        return 0.5 * jnp.square(_predict(params, xi, norm, eps, axis_name="batch") - yi)

    grads = {
        "jacrev": jax.jacrev(losses)(params, x),
        "vmap alone": jax.vmap(jax.grad(alone), in_axes=(None, 0, 0))(
            params, x[:, None, :], y[:, None]
        ),
        "vmap axis_name": jax.vmap(
            jax.grad(named), in_axes=(None, 0, 0), axis_name="batch"
        )(params, x, y),
        "moved": jax.jacrev(losses)(params, x.at[1].add(nudge)),  # x[1] nudged
    }
    rows = {k: jax.vmap(lambda t: ravel_pytree(t)[0])(g) for k, g in grads.items()}
    batch_grad = ravel_pytree(jax.grad(lambda p: jnp.sum(losses(p, x)))(params))[0]
    first = {
        k: jnp.linalg.norm(g["w1"].reshape(len(x), -1), axis=1)
        for k, g in grads.items()
    }
    alone = grads["vmap alone"]
    first_max = jnp.maximum(jnp.abs(alone["w1"]).max(), jnp.abs(alone["b1"]).max())
    return rows, batch_grad, first, first_max


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def per_example(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Three per-example gradient decompositions, with batch norm and layer norm."""
    keys = jax.random.split(jax.random.key(config.seed + 2), 4)
    b, d = config.per_example_batch, config.in_features
    x = _input(keys[0], (b, d), jnp.float64)
    y = jnp.sin(x @ jax.random.normal(keys[1], (d,), jnp.float64))
    params = _init_model(keys[2], config)
    nudge = 0.5 * jax.random.normal(keys[3], (d,), jnp.float64)
    results, first_layer = {}, {}
    for norm in ("batch_norm", "layer_norm"):
        rows, batch_grad, first, first_max = jax.device_get(
            _decompositions(params, x, y, nudge, norm=norm, eps=config.eps)
        )
        jacrev, alone, named = (
            rows["jacrev"],
            rows["vmap alone"],
            rows["vmap axis_name"],
        )
        results[norm] = {
            "jacrev_sum_rel_error": _rel(jacrev.sum(0), batch_grad),
            "vmap_alone_sum_rel_error": _rel(alone.sum(0), batch_grad),
            "vmap_axis_name_sum_rel_error": _rel(named.sum(0), batch_grad),
            "vmap_alone_vs_jacrev_rel_diff": _rel(alone, jacrev),
            "vmap_axis_name_vs_jacrev_rel_diff": _rel(named, jacrev),
            "vmap_alone_first_layer_grad_max_abs": float(first_max),
            "other_sample_sensitivity": _rel(rows["moved"][0], jacrev[0]),
        }
        first_layer[norm] = {k: v for k, v in first.items() if k != "moved"}
    _per_example_report(results, config, workdir)
    _per_example_figure(first_layer, workdir)
    return {"per_example": results}


def _per_example_report(
    results: dict, config: ml_collections.ConfigDict, workdir: Workdir
) -> None:
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
        check = {kind: threshold}
        workdir.check(f"{norm}_{key}", results[norm][key], **check, source=CHAIN_RULE)


def _per_example_figure(first_layer: dict, workdir: Workdir) -> None:
    fig, axes = new_figure(1, len(first_layer), size=(5.0 * len(first_layer), 3.4))
    for ax, (norm, methods) in zip(axes, first_layer.items(), strict=True):
        width = 0.8 / len(methods)
        for i, (method, values) in enumerate(methods.items()):
            ax.bar(
                np.arange(values.size) + (i - 1) * width, values, width, label=method
            )
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

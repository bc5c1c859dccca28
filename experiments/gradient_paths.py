"""Gradient paths: the chain rule's sum over the uses of a value, where it matters.

Every figure comes from ``chainlab.paths.decompose``: a value is marked with
``paths.tag`` and the gradient is split over its uses, found in the jaxpr (terms sum to
``jax.grad``). Five places:

1. Fan-out (float64): h = elu(W x + b) feeds ``fanout_branches`` branches; the terms
   are each branch's gradient, checked against ``jax.grad`` of the branch alone.
2. A residual MLP on two moons, trained with Adam (``chainlab.training.fit``): at
   each evaluation, the gradient of the loss with respect to the embedding, split at
   each block's input into the skip connection and the residual branch; the share
   through the skip (projection on the total) over training.
3. Normalization (float64): x -> Dense -> batch or instance norm -> tanh -> mean ->
   Dense, squared error. The first layer's gradient split at the norm's input into
   the direct path and the paths through the statistics (mean, variance), over batch
   sizes; batch norm's terms against their closed forms.
4. Attention (float64): self-attention on x, split at x into the query, key (the
   weights) and value paths over a temperature grid; a temperature shared by two
   layers, d L / d log tau split by layer and checked against the closed form
   ``chainlab.attention.attention_tau_grad``.
5. RealNVP on two moons: the log-likelihood's parameter gradient split at ``(z,
   log det)`` into the base-density and log-determinant pathways, against
   ``chainlab.flows.gradient_pathways``, per layer, at initialisation and after
   training.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from chainlab import paths
from chainlab.activations import elu
from chainlab.attention import attention, attention_tau_grad
from chainlab.data import channel_features, fan_out_problem, two_moons
from chainlab.flows import (
    gradient_pathways,
    layerwise_norms_and_cosine,
    realnvp,
    standard_normal_log_prob,
)
from chainlab.losses import cross_entropy
from chainlab.normalization import batch_norm, instance_norm, random_affine
from chainlab.runner.plotting import new_figure
from chainlab.runner.workdir import Workdir
from chainlab.training import fit, median_step_ms

SOURCE = "chain rule: sum over paths (chainlab.paths)"
# Terms against an independent float64 computation (jax.grad of one branch, a closed
# form, gradient_pathways): the same sums in another order, a few hundred ulps.
F64_TOL = 1e-12
# The terms' sum against jax.grad in float32 (training runs): relative round-off.
F32_REL_TOL = 1e-5
NORMS = {"batch_norm": batch_norm, "instance_norm": instance_norm}


def _flat(tree) -> jax.Array:
    return ravel_pytree(tree)[0]


def _max_abs(a, b) -> jax.Array:
    return jnp.max(jnp.abs(_flat(a) - _flat(b)))


def fan_out(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """One activation feeding several branches: each term is one branch's gradient."""
    d, m = config.fanout_dim, config.fanout_branches
    weight, bias, heads, points = fan_out_problem(
        jax.random.key(config.seed), d, m, config.fanout_trials
    )

    def hidden(x):
        return elu(weight @ x + bias, config.elu_alpha, side="left")

    def branch(i, h):
        return jnp.sum(jnp.tanh(heads[i] @ h)) * (i + 1)

    def loss(x):
        h = paths.tag(hidden(x), "h")
        total = 0.0
        for i in range(m):
            with jax.named_scope(f"branch{i}"):
                total = total + branch(i, h)
        return total

    @jax.jit
    @jax.vmap
    def errors(x):
        split = paths.decompose(loss, x, at="h")
        by_hand = [jax.grad(lambda x, i=i: branch(i, hidden(x)))(x) for i in range(m)]
        term_error = jnp.max(jnp.abs(jnp.stack(split.terms) - jnp.stack(by_hand)))
        shares = jnp.stack(list(split.shares().values()))
        return term_error, jnp.max(jnp.abs(split.total - jax.grad(loss)(x))), shares

    term_error, sum_error, shares = errors(points)
    results = {
        "fanout_term_max_abs_error": float(term_error.max()),
        "fanout_sum_vs_grad_max_abs": float(sum_error.max()),
        "fanout_mean_shares": np.asarray(shares.mean(0)).tolist(),
    }
    for key in ("fanout_term_max_abs_error", "fanout_sum_vs_grad_max_abs"):
        workdir.check(
            key, results[key], at_most=F64_TOL, label="float64", source=SOURCE
        )
    workdir.table(
        ["branch", "mean share of dL/dx"],
        [[f"g_{i}", f"{s:.3f}"] for i, s in enumerate(results["fanout_mean_shares"])],
        title=f"**Fan-out**: h = elu(W x + b) in R^{d} feeds {m} branches g_i = i * "
        f"sum(tanh(A_i h)); terms by decompose against jax.grad of each branch alone, "
        f"{config.fanout_trials} random points",
    )
    return results


def _residual_init(key, config) -> dict:
    width, keys = config.width, jax.random.split(key, 2 * config.blocks + 2)

    def dense(k, fan_in, fan_out, scale=1.0):
        w = jax.random.normal(k, (fan_in, fan_out)) * scale / np.sqrt(fan_in)
        return {"w": w, "b": jnp.zeros(fan_out)}

    blocks = [
        {
            "inner": dense(keys[2 * i], width, width),
            "outer": dense(keys[2 * i + 1], width, width),
        }
        for i in range(config.blocks)
    ]
    return {
        "embed": dense(keys[-2], 2, width),
        "blocks": blocks,
        "head": dense(keys[-1], width, 2),
    }


def _affine(layer, x):
    return x @ layer["w"] + layer["b"][None, :]


def _residual_logits(params, x):
    """x (n, 2) -> embed -> blocks h + W2 tanh(W1 h) (each input tagged) -> logits."""
    h = jnp.tanh(_affine(params["embed"], x))
    for i, block in enumerate(params["blocks"]):
        h = paths.tag(h, f"block{i}")
        with jax.named_scope("branch"):
            branch = _affine(block["outer"], jnp.tanh(_affine(block["inner"], h)))
        h = h + branch
    return _affine(params["head"], h)


def _embed_loss(embed, rest, batch):
    """The mean cross-entropy as a function of the embedding (what is split)."""
    x, y = batch
    return jnp.mean(cross_entropy(_residual_logits({**rest, "embed": embed}, x), y))


def _skip_shares(params, probe, blocks: int) -> dict:
    """Per block: the share of d loss / d embedding through the skip connection."""
    embed, rest = params["embed"], {k: v for k, v in params.items() if k != "embed"}
    shares = {}
    for i in range(blocks):
        split = paths.decompose(_embed_loss, embed, rest, probe, at=f"block{i}")
        by_scope = split.group(lambda p: "branch" if "branch" in p.scope else "skip")
        total = _flat(split.total)
        skip = _flat(by_scope["skip"])
        shares[f"skip_share_block{i}"] = jnp.vdot(skip, total) / jnp.vdot(total, total)
        shares[f"sum_rel_error_block{i}"] = jnp.linalg.norm(
            total - _flat(jax.grad(_embed_loss)(embed, rest, probe))
        ) / jnp.linalg.norm(total)
    return shares


def residual(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Skip vs branch over training of a residual MLP on two moons (float32)."""
    split = two_moons()
    data = (jnp.asarray(split.x_train), jnp.asarray(split.y_train))
    probe = (data[0][: config.probe_size], data[1][: config.probe_size])
    params = _residual_init(jax.random.key(config.seed), config)
    shares = jax.jit(functools.partial(_skip_shares, blocks=config.blocks))

    def evaluate(params):
        values = jax.device_get(shares(params, probe))
        logits = _residual_logits(params, jnp.asarray(split.x_test))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == split.y_test)
        return {"test_accuracy": float(accuracy), **jax.tree.map(float, values)}

    def loss_fn(params, batch, key):
        del key
        return jnp.mean(cross_entropy(_residual_logits(params, batch[0]), batch[1]))

    result = fit(
        loss_fn,
        params,
        optax.adam(config.learning_rate),
        data,
        steps=config.steps,
        batch_size=config.batch_size,
        eval_fn=evaluate,
        eval_every=config.eval_every,
        log_every=config.eval_every,
        **workdir.fit_options,
        name="residual",
    )
    evals = [r for r in result.history if r["split"] == "eval"]
    final = evals[-1]
    args = (
        result.params["embed"],
        {k: v for k, v in result.params.items() if k != "embed"},
        probe,
    )
    timing = {"warmup": 2, "repeats": config.timing_repeats}
    grad_ms = median_step_ms(jax.jit(jax.grad(_embed_loss)), *args, **timing)
    split_ms = median_step_ms(
        jax.jit(lambda *a: paths.decompose(_embed_loss, *a, at="block0").terms),
        *args,
        **timing,
    )
    results = {
        "residual_test_accuracy": final["test_accuracy"],
        "residual_skip_share": {
            f"block{i}": [r[f"skip_share_block{i}"] for r in evals]
            for i in range(config.blocks)
        },
        "residual_eval_steps": [r["step"] for r in evals],
        "residual_sum_rel_error": max(
            r[f"sum_rel_error_block{i}"] for r in evals for i in range(config.blocks)
        ),
        "decompose_over_grad_time": split_ms / grad_ms,
    }
    workdir.check(
        "residual_sum_rel_error",
        results["residual_sum_rel_error"],
        at_most=F32_REL_TOL,
        label="float32, every block and evaluation",
        source=SOURCE,
    )
    workdir.check(
        "decompose_over_grad_time",
        results["decompose_over_grad_time"],
        info="2 paths: one forward, 2 backward lanes",
        source="timing (median)",
    )
    workdir.table(
        ["block", "skip share at start", "skip share at the end"],
        [
            [i, f"{v[0]:.3f}", f"{v[-1]:.3f}"]
            for i, v in enumerate(results["residual_skip_share"].values())
        ],
        title=f"**Residual MLP** ({config.blocks} blocks of width {config.width}, "
        f"test accuracy {final['test_accuracy']:.3f}): share of d loss / d embedding "
        "through the skip connection at each block's input (projection on the "
        "total; the branch has the rest)",
    )
    fig, ax = new_figure(size=(6.0, 3.6))
    for i, values in enumerate(results["residual_skip_share"].values()):
        ax.plot(results["residual_eval_steps"], values, label=f"block {i}")
    ax.set(xlabel="training step", ylabel="share through the skip")
    ax.legend()
    workdir.save_figure(
        fig,
        "residual_skip_share",
        caption="Share of the embedding's gradient through each block's skip "
        "connection over training.",
    )
    return results


def _norm_loss(w1, x, y, *, norm: str, eps: float, affine):
    """Squared error of x (N, L, C) -> Dense -> norm -> tanh -> mean over L -> Dense."""
    h = paths.tag(x @ w1, "h")
    z = jnp.tanh(NORMS[norm](h, *affine, eps=eps))
    return 0.5 * jnp.mean(jnp.square(jnp.mean(z, axis=1) @ jnp.ones(z.shape[-1]) - y))


def _statistics_split(split: paths.Decomposition) -> list[jax.Array]:
    """|direct|, |statistics| (mean and variance paths), their cosine, the share
    of the statistics (projection on the total)."""
    groups = split.group(lambda p: "direct" if "_normalize" in p.source else "stats")
    direct, stats = _flat(groups["direct"]), _flat(groups["stats"])
    total = direct + stats
    norms = jnp.linalg.norm(direct), jnp.linalg.norm(stats)
    return [
        *norms,
        jnp.vdot(direct, stats) / (norms[0] * norms[1]),
        jnp.vdot(stats, total) / jnp.vdot(total, total),
    ]


NORM_COLUMNS = ("direct_norm", "statistics_norm", "cosine", "statistics_share")


def _batch_norm_closed_form_error(x, g, affine, eps) -> jax.Array:
    """Largest gap between decompose's terms of d sum(g * batch_norm(x)) / dx and
    their closed forms (through the mean, the variance, and the direct path)."""
    scale, offset = affine

    def loss(x):
        return jnp.sum(g * batch_norm(paths.tag(x, "x"), scale, offset, eps=eps))

    split = paths.decompose(loss, x, at="x")
    s = jnp.sqrt(x.var(0, keepdims=True) + eps)
    xhat, gain = (x - x.mean(0, keepdims=True)) / s, scale[None, :]
    closed = (
        jnp.broadcast_to(-gain / s * g.mean(0, keepdims=True), x.shape),  # mean
        -gain / (x.shape[0] * s) * xhat * jnp.sum(g * xhat, 0, keepdims=True),  # var
        g * gain / s,  # direct
    )
    return jnp.max(jnp.abs(jnp.stack(split.terms) - jnp.stack(closed)))


def normalization(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Direct path vs paths through the statistics, batch vs instance norm (float64)."""
    keys = jax.random.split(jax.random.key(config.seed + 1), 4)
    c, length = config.channels, config.spatial
    affine = random_affine(keys[0], c, dtype=jnp.float64)
    w1 = jax.random.normal(keys[1], (c, c), jnp.float64) / np.sqrt(c)
    results, rows = {}, []
    for n in config.norm_batch_sizes:
        x = channel_features(keys[2], (n, length, c), dtype=jnp.float64)
        y = jax.random.normal(keys[3], (n,), jnp.float64)
        for norm in NORMS:
            loss = functools.partial(
                _norm_loss, norm=norm, eps=config.eps, affine=affine
            )
            values = _statistics_split(paths.decompose(loss, w1, x, y, at="h"))
            for column, value in zip(NORM_COLUMNS, values, strict=True):
                results[f"{norm}_{column}_n{n}"] = float(value)
            rows.append([n, norm, *(f"{float(v):.3g}" for v in values)])
    workdir.table(
        ["batch size", "layer", "|direct|", "|statistics|", "cosine", "share"],
        rows,
        title="**Normalization**: the first layer's gradient split at the norm's "
        "input into the direct path and the paths through the statistics (mean and "
        "variance); *share*: the statistics term projected on the total",
    )
    # Batch norm's three terms at its input against the closed forms (upstream g).
    x = channel_features(keys[2], (config.norm_batch_sizes[0], c), dtype=jnp.float64)
    g = jax.random.normal(keys[3], x.shape, jnp.float64)
    error = jax.jit(_batch_norm_closed_form_error, static_argnums=3)
    results["batch_norm_terms_closed_form_max_abs"] = float(
        error(x, g, affine, config.eps)
    )
    workdir.check(
        "batch_norm_terms_closed_form_max_abs",
        results["batch_norm_terms_closed_form_max_abs"],
        at_most=F64_TOL,
        label="mean, variance and direct terms, float64",
        source="Ioffe & Szegedy 2015 (backward pass by hand)",
    )
    fig, ax = new_figure(size=(5.5, 3.4))
    for norm in NORMS:
        shares = [
            results[f"{norm}_statistics_share_n{n}"] for n in config.norm_batch_sizes
        ]
        ax.plot(config.norm_batch_sizes, shares, "o-", label=norm)
    ax.set(xscale="log", xlabel="batch size", ylabel="share through the statistics")
    ax.legend()
    workdir.save_figure(
        fig,
        "normalization_paths",
        caption="Share of the first-layer gradient through the normalization "
        "statistics (projection on the total), by batch size.",
    )
    return results


def _self_attention(x, weights, tau):
    with jax.named_scope("query"):
        q = x @ weights[0]
    with jax.named_scope("key"):
        k = x @ weights[1]
    with jax.named_scope("value"):
        v = x @ weights[2]
    return attention(q, k, v, tau=tau)


def _shared_tau_terms(x, weights, target, tau):
    """Two self-attention layers sharing ``tau``: d L / d log tau split by layer,
    and each layer's closed form ``tau * attention_tau_grad`` (cotangent by vjp)."""

    def two_layers(log_tau):
        shared = paths.tag(jnp.exp(log_tau), "tau")
        with jax.named_scope("layer1"):
            h = x + _self_attention(x, weights[0], shared)
        with jax.named_scope("layer2"):
            out = h + _self_attention(h, weights[1], shared)
        return 0.5 * jnp.sum(jnp.square(out - target))

    split = paths.decompose(two_layers, jnp.log(tau), at="tau")
    by_layer = split.group(lambda p: p.scope.split("/")[0])
    h = x + _self_attention(x, weights[0], tau)
    out, pullback = jax.vjp(lambda h: h + _self_attention(h, weights[1], tau), h)
    g2 = out - target  # d L / d out of layer 2, then of layer 1 through the residual
    g1 = pullback(g2)[0]
    closed = {}
    for name, inputs, layer, g in (
        ("layer1", x, weights[0], g1),
        ("layer2", h, weights[1], g2),
    ):
        q, k, v = (inputs @ w for w in layer)
        closed[name] = tau * attention_tau_grad(q, k, v, tau, g)
    return by_layer, closed


def attention_paths(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Through the weights (queries, keys) vs the values; a shared tau by layer."""
    keys = jax.random.split(jax.random.key(config.seed + 2), 4)
    t, d = config.tokens, config.model_dim
    x = jax.random.normal(keys[0], (t, d), jnp.float64)
    weights = jax.random.normal(keys[1], (2, 3, d, d), jnp.float64) / np.sqrt(d)
    target = jax.random.normal(keys[2], (t, d), jnp.float64)

    def loss(x, tau):
        out = _self_attention(paths.tag(x, "x"), weights[0], tau)
        return 0.5 * jnp.sum(jnp.square(out - target))

    @jax.jit
    @jax.vmap
    def norms(tau):
        split = paths.decompose(loss, x, tau, at="x")
        groups = split.group(lambda p: p.scope)
        return {name: jnp.linalg.norm(term) for name, term in groups.items()}

    taus = np.geomspace(*config.tau_range, config.tau_points)
    table = jax.device_get(norms(jnp.asarray(taus)))
    weights_norm = np.hypot(table["query"], table["key"])
    results = {
        "attention_taus": taus.tolist(),
        "attention_path_norms": {k: np.asarray(v).tolist() for k, v in table.items()},
        "attention_weights_over_values_at_tau_min": float(
            weights_norm[0] / table["value"][0]
        ),
    }
    rows = [
        [
            f"{tau:.3g}",
            f"{table['query'][i]:.3g}",
            f"{table['key'][i]:.3g}",
            f"{table['value'][i]:.3g}",
        ]
        for i, tau in enumerate(taus)
    ]
    workdir.table(
        ["tau", "|through queries|", "|through keys|", "|through values|"],
        rows,
        title="**Attention**: d L / d x of self-attention split at x; queries and keys "
        "reach L through the attention weights, the values directly",
    )

    figure = paths.plot_decomposition(
        paths.decompose(loss, x, config.shared_tau, at="x"),
        title=f"self-attention at tau = {config.shared_tau:g}: d L / d x by path",
    )
    workdir.save_figure(
        figure,
        "attention_decomposition",
        caption="chainlab.paths.plot_decomposition: the paths from x (edge width: "
        "norm of the term; share: projection on the total) and their cosines.",
    )
    by_layer, closed = jax.jit(_shared_tau_terms)(x, weights, target, config.shared_tau)
    results["shared_tau_by_layer"] = {k: float(v) for k, v in by_layer.items()}
    results["shared_tau_closed_form_max_abs"] = max(
        abs(float(by_layer[k]) - float(closed[k])) for k in closed
    )
    workdir.check(
        "shared_tau_closed_form_max_abs",
        results["shared_tau_closed_form_max_abs"],
        at_most=F64_TOL,
        label="d L / d log tau per layer, float64",
        source="chainlab.attention.attention_tau_grad",
    )
    fig, ax = new_figure(size=(5.5, 3.4))
    for name in ("query", "key", "value"):
        ax.plot(taus, table[name], "o-", label=f"through {name}s")
    ax.set(xscale="log", yscale="log", xlabel="tau", ylabel="|term of d L / d x|")
    ax.legend()
    workdir.save_figure(
        fig,
        "attention_paths",
        caption="Self-attention: the input gradient through the queries and keys "
        "(the weights) and through the values, over the temperature.",
    )
    return results


def _flow_pathways(flow, params, x):
    """Per-layer norms and cosine of the two pathways, by decompose and by hand."""

    def log_likelihood(params):
        z, logdet = paths.tag(flow.forward(params, x), "flow")
        return jnp.mean(standard_normal_log_prob(z) + logdet)

    split = paths.decompose(log_likelihood, params, at="flow")
    by_leaf = split.group(lambda p: p.leaf)  # "[0]": through z, "[1]": the log-dets
    base, logdet = gradient_pathways(flow, params, x)
    error = jnp.maximum(
        _max_abs(by_leaf["[0]"], base), _max_abs(by_leaf["[1]"], logdet)
    )
    return layerwise_norms_and_cosine(by_leaf["[0]"], by_leaf["[1]"]), error


def flow_pathways(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    """Base density vs log-determinant pathways of a RealNVP, before and after fit."""
    split = two_moons()
    data = jnp.asarray(split.x_train)
    flow = realnvp(2, num_layers=config.flow_layers, hidden=tuple(config.flow_hidden))
    initial = flow.init(jax.random.key(config.seed + 3))
    result = fit(
        lambda p, batch, key: -jnp.mean(flow.log_prob(p, batch)),
        initial,
        optax.adam(config.learning_rate),
        data,
        steps=config.flow_steps,
        batch_size=config.batch_size,
        log_every=config.eval_every,
        **workdir.fit_options,
        name="realnvp",
    )
    results, rows = {}, []
    split_fn = jax.jit(functools.partial(_flow_pathways, flow))
    for stage, params in (("initial", initial), ("trained", result.params)):
        with jax.enable_x64(True):
            probe = jnp.asarray(split.x_test[: config.probe_size], jnp.float64)
            params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
            (base, logdet, cosine), error = split_fn(params, probe)
        error = float(error)
        results[f"flow_{stage}_pathways_vs_gradient_pathways_max_abs"] = error
        results[f"flow_{stage}_cosine"] = np.asarray(cosine).tolist()
        rows += [
            [stage, k, f"{base[k]:.3g}", f"{logdet[k]:.3g}", f"{cosine[k]:.3f}"]
            for k in range(config.flow_layers)
        ]
        workdir.check(
            f"flow_{stage}_pathways_vs_gradient_pathways_max_abs",
            error,
            at_most=F64_TOL,
            label="float64",
            source="chainlab.flows.gradient_pathways",
        )
    workdir.table(
        [
            "parameters",
            "layer",
            "|through z into log N(z)|",
            "|through log det|",
            "cosine",
        ],
        rows,
        title=f"**RealNVP** ({config.flow_steps} training steps on two moons): the "
        "parameter gradient of the mean log-likelihood split at (z, log det)",
    )
    return results


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    with jax.enable_x64(True):
        results = fan_out(config, workdir)
        results.update(normalization(config, workdir))
        results.update(attention_paths(config, workdir))
    results.update(residual(config, workdir))
    results.update(flow_pathways(config, workdir))
    return results

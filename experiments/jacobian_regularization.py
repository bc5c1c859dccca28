"""Jacobian regularization on digits: exact vs random-projection penalty, robustness.

Reproduces the shape of Hoffman, Roberts & Yaida (2019), "Robust Learning with Jacobian
Regularization", offline, on chainlab.data (digits protocol). A 64-128-128-10 tanh MLP
(or, with ``architecture="cnn"``, a small tanh CNN) is trained three ways:
cross-entropy alone (``none``), plus strength * ||J||_F^2 exactly (``exact``) and plus
its one-projection estimate (``projection``), J being the Jacobian of the logits with
respect to the input (:mod:`chainlab.regularizers`). Measured, as means over seeds:
clean accuracy, mean ||J||_F, mean ||grad_x loss||, accuracy under Gaussian noise,
FGSM and PGD (:mod:`chainlab.robustness`) and the time of one training step; a sweep
of the strength (paper scale); the estimators' moments against their closed forms; the
closed-form penalty gradient of a one-hidden-layer network against autodiff; and, at
paper scale with the MLP, the step time against the number of outputs C (the network
64-hidden-C on one batch of digits): the exact penalty in each differentiation mode
and as :func:`chainlab.regularizers.exact_mode` chooses, and the projection penalty.
"""

from functools import cache, partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from chainlab import regularizers as reg
from chainlab import robustness, training
from chainlab.compilation import eigen_matmul_options
from chainlab.data import digits_for_classifier
from chainlab.models import MLP, ConvNet, dense_layers
from chainlab.runner.figures import curve_panels, estimator_panels
from chainlab.runner.timing import interleaved_rounds
from chainlab.runner.workdir import Workdir
from chainlab.validation import check_at_least

PAPER = "Hoffman et al. 2019"
BENCHMARK = "benchmarks/jacobian_vs_pytorch.py"
MATRIX_CALCULUS = "matrix calculus (Petersen & Pedersen 2012)"
UNBIASED = "E[C ||v^T J||^2] = E[||J u||^2] = ||J||_F^2"
MODES = ("none", "exact", "projection")
ESTIMATORS = ("projection", "forward_projection")
NUM_CLASSES = 10
REDUCTION_TARGET = 10.0  # ||J||_F(none) / ||J||_F(projection)
ACCURACY_DROP_TARGET = 1.5  # points of clean test accuracy
STEP_RATIO_TARGET = 3.0  # projection step / plain step
# float32 rounding through two differentiation passes and a mean over examples stays
# below 1e-4 relative; float64 agrees to ~1e-14.
CLOSED_FORM_TOL = {"float32": 1e-4, "float64": 1e-10}
TIMING_ROUNDS, TIMING_BLOCK = 3, 10  # rounds; calls per turn within a round
# With ~100 (estimator, num_projections, example) cells a 4.5 sigma excursion of an
# unbiased estimator's mean has probability below 1e-3.
UNBIASED_SIGMAS = 4.5
SLOPE_TOL = 0.1  # Var ~ 1 / num_projections: log-log slope -1 +- this
SWEPT = ("test_accuracy", "jacobian_frobenius", "noise_accuracy")
# Step time against the number of outputs: C values, and interleaved timing (rounds;
# calls per network and round; calls per turn) of four steps per C.
SCALING_ROUNDS, SCALING_REPEATS, SCALING_BLOCK = 3, 4, 2
SCALING_STEPS = ("plain", "reverse", "forward", "projection")
MODE_SLOWDOWN_TARGET = 1.10  # exact (ad_mode="auto") / the faster mode, every round
PER_PROBE_SPREAD_TARGET = 1.5  # reverse mode's cost per probe, max / min over C


def _model(config):
    """The network ``config.architecture`` names, and its description."""
    if config.architecture == "mlp":
        widths = "-".join(map(str, (64, *config.hidden, NUM_CLASSES)))
        return MLP((*config.hidden, NUM_CLASSES)), f"a {widths} tanh MLP"
    if config.architecture == "cnn":
        convs = ", ".join(map(str, config.conv_features))
        description = (
            f"a tanh CNN (3x3 convolutions of {convs} channels, then Dense 10)"
        )
        return ConvNet(tuple(config.conv_features), NUM_CLASSES), description
    raise ValueError(
        f"architecture must be 'mlp' or 'cnn', got {config.architecture!r}"
    )


def _loss_fn(apply, mode, config, strength):
    """Cross-entropy + strength * mean ||J||_F^2 (logits from the penalty's pass)."""
    if mode == "none":
        return training.classification_loss(apply)
    return reg.penalized_classification_loss(
        apply, strength=strength, method=mode, num_projections=config.num_projections
    )


def _compiler_options(config) -> dict[str, str]:
    return eigen_matmul_options() if config.eigen_matmuls else {}


def _train_and_evaluate(config, model, split, mode, strength, seed, workdir):
    """Train one model with ``fit``; its parameters and test-split measurements."""
    name = mode + (f"_s{strength:g}" if mode != "none" else "") + f"_seed{seed}"
    params = training.fit(
        _loss_fn(model.apply, mode, config, strength),
        model.init(jax.random.key(seed), split.x_train[:1]),
        optax.adam(config.learning_rate),
        (split.x_train, split.y_train),
        steps=config.steps,
        batch_size=config.batch_size,
        seed=seed,
        log_every=max(1, min(100, config.steps // 4)),
        name=name,
        compiler_options=_compiler_options(config),
        **workdir.fit_options,
    ).params
    measured = robustness.evaluate(
        model.apply,
        params,
        split.x_test,
        split.y_test,
        sigmas=(config.noise_sigma, *config.noise_sigmas),
        epsilons=config.attack_epsilons,
        key=jax.random.key(seed + 10_000),
        draws=config.noise_draws,
        pgd_steps=config.pgd_steps,
        bounds=(0.0, 1.0),
    )
    noise = measured.pop("gaussian")  # at config.noise_sigma, then config.noise_sigmas
    measured |= {"noise_accuracy": noise[0], "gaussian": noise[1:]}
    return params, {"test_accuracy": measured.pop("accuracy"), **measured}


def _timed_step(loss_fn, optimizer, params, batch, options):
    """One Adam step per call, each from where the last left off, as
    ``training.make_packed_step`` builds it (the parameters in one vector)."""
    packed = training.make_packed_step(
        loss_fn, optimizer, params, compiler_options=options
    )
    key = jax.random.key(0)
    return training.stepping(packed.step, packed.params, packed.opt_state, batch, key)


def _step_times(config, model, split) -> dict:
    """Median ms of one jitted Adam step per mode, per round of interleaved turns."""
    batch = tuple(jnp.asarray(a[: config.batch_size]) for a in split[:2])
    params = model.init(jax.random.key(config.seed), batch[0][:1])
    optimizer = optax.adam(config.learning_rate)
    options = _compiler_options(config)
    calls = {
        mode: _timed_step(
            _loss_fn(model.apply, mode, config, config.strength),
            optimizer,
            params,
            batch,
            options,
        )
        for mode in MODES
    }
    ms = interleaved_rounds(
        calls, config.timing_repeats, rounds=TIMING_ROUNDS, block=TIMING_BLOCK
    )
    ratios = ms["projection"] / ms["none"]  # per round; the worst one counts
    return {
        "per_mode": {
            m: {"step_ms": float(np.median(t)), "step_ms_rounds": t.tolist()}
            for m, t in ms.items()
        },
        "compiler_options": options,
        "projection_over_plain_step": float(np.max(ratios)),
        "projection_over_plain_step_rounds": ratios.tolist(),
        "exact_over_plain_step": float(np.median(ms["exact"] / ms["none"])),
    }


def _scaling(config, split) -> dict:
    """Step time against the number of outputs C: one Adam step of the MLP
    64-hidden-C on the first batch of digits, plain and with the exact penalty in
    reverse mode (C VJPs) and forward mode (64 JVPs), and with the projection
    penalty; all of them, for every C, take turns (``interleaved_rounds``), and the
    exact method's own choice (``exact_mode``) is set against the faster mode per
    round.
    Cost per probe: (penalty step - plain step) / probes, microseconds."""
    x, y = (jnp.asarray(a[: config.batch_size]) for a in split[:2])
    optimizer = optax.adam(config.learning_rate)
    options = _compiler_options(config)
    penalties = {
        "reverse": {"method": "exact", "ad_mode": "reverse"},
        "forward": {"method": "exact", "ad_mode": "forward"},
        "projection": {
            "method": "projection",
            "num_projections": config.num_projections,
        },
    }
    calls, chosen = {}, {}
    for outputs in config.scaling_outputs:
        model = MLP((*config.hidden, outputs))
        params = model.init(jax.random.key(config.seed), x[:1])
        losses = {"plain": training.classification_loss(model.apply)}
        for name, penalty in penalties.items():
            losses[name] = reg.penalized_classification_loss(
                model.apply, strength=config.strength, **penalty
            )
        for name, loss in losses.items():
            calls[outputs, name] = _timed_step(loss, optimizer, params, (x, y), options)
        chosen[outputs] = reg.exact_mode(model.apply, params, x)
    # Every C takes turns in the same rounds: a drift of the machine's speed is
    # shared by all C instead of passing for a difference between them.
    ms = interleaved_rounds(
        calls, SCALING_REPEATS, rounds=SCALING_ROUNDS, block=SCALING_BLOCK
    )
    rows = [
        _scaling_row(outputs, x.shape[1], ms, chosen[outputs]) for outputs in chosen
    ]
    per_probe = [row["reverse_us_per_probe"] for row in rows]
    return {
        "rows": rows,
        "exact_over_best": float(
            max(max(row["exact_over_best_rounds"]) for row in rows)
        ),
        "reverse_per_probe_spread": float(max(per_probe) / min(per_probe)),
    }


def _scaling_row(outputs: int, inputs: int, ms: dict, chosen: str) -> dict:
    """One C of the scaling table from the rounds' times ``ms[C, step]``."""
    times = {name: t for (c, name), t in ms.items() if c == outputs}
    best = np.minimum(times["reverse"], times["forward"])
    probes = {"reverse": outputs, "forward": inputs}
    plain = float(np.median(times["plain"]))
    return {
        "outputs": outputs,
        **{f"{n}_ms": float(np.median(t)) for n, t in times.items()},
        "exact_mode": chosen,
        "exact_over_best_rounds": (times[chosen] / best).tolist(),
        **{
            f"{n}_us_per_probe": float(1e3 * (np.median(times[n]) - plain) / k)
            for n, k in probes.items()
        },
    }


def _estimator_study(config, model, params, x_test) -> dict:
    """Both estimators' moments over many keys against their closed forms."""
    xs = jnp.asarray(x_test[: config.batch_size])
    study = {"batch_relative_std": {}}
    for method in ESTIMATORS:
        std = reg.penalty_relative_std(model.apply, params, xs, method=method)
        study["batch_relative_std"][method] = float(std)
        study[method] = reg.estimator_study(
            lambda z: model.apply(params, z),
            xs[: config.variance_examples],
            method=method,
            key=jax.random.key(config.seed + 20_000),
            num_draws=config.variance_keys,
            num_projections=config.variance_projections,
            chunk=config.variance_chunk,
        ).summary()
    return study


def _closed_form_check(config, x_test) -> dict:
    """Mean dR/dparams of a one-hidden-layer tanh MLP, matrix calculus against
    autodiff in float32 and float64, and the time of each."""
    mlp = MLP((config.closed_form_hidden, NUM_CLASSES))
    init = mlp.init(jax.random.key(config.seed), jnp.asarray(x_test[:1]))
    init = reg.OneHiddenLayer.from_layers(dense_layers(init))
    out = {}
    for dtype in CLOSED_FORM_TOL:
        with jax.enable_x64(dtype == "float64"):
            params = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype), init)
            xs = jnp.asarray(x_test[: config.closed_form_examples], dtype)
            out[dtype] = reg.one_hidden_layer_grad_errors(params, xs)
            for method in ("autodiff", "closed_form"):
                grad = partial(reg.one_hidden_layer_mean_penalty_grad, method=method)
                ms = training.median_step_ms(jax.jit(grad), params, xs, repeats=10)
                out[dtype][f"{method}_ms"] = ms
    return out


def _figures(config, results, study, workdir) -> None:
    curves = {c: {m: results[m][c] for m in MODES} for c in ("gaussian", "fgsm", "pgd")}
    epsilons = config.attack_epsilons
    panels = [
        ("Gaussian noise sigma", config.noise_sigmas, curves["gaussian"]),
        ("FGSM epsilon (L-inf)", epsilons, curves["fgsm"]),
        (f"PGD-{config.pgd_steps} epsilon (L-inf)", epsilons, curves["pgd"]),
    ]
    figure = curve_panels(
        panels, ylabel="test accuracy", ylim=(0, 1.02), legend_title="penalty"
    )
    caption = "Test accuracy against Gaussian input noise, FGSM and PGD (L-inf)."
    workdir.save_figure(figure, "robustness", caption=caption)
    estimates = {method: study[method] for method in ESTIMATORS}
    figure = estimator_panels(estimates, ylabel="||J||_F^2, example 0")
    caption = "Left: estimates of ||J||_F^2 (mean +- std over keys) against the exact "
    caption += "value. Right: variance relative to exact^2 vs num_projections."
    workdir.save_figure(figure, "estimator_variance", caption=caption)


def _check(measured, source: str, **threshold) -> dict:
    """The keywords of ``Workdir.check``: ``measured``, ``source``, one threshold."""
    return {"measured": measured, "source": source, **threshold}


def _goals(config, results) -> dict[str, dict]:
    """The training goals, ``{name: Workdir.goal keywords except judged}``."""
    none, proj = results["none"], results["projection"]
    speed = {"at_most": STEP_RATIO_TARGET}  # the speed goal is set for the MLP
    if config.architecture != "mlp":
        speed = {"info": "goal set for the MLP only"}
    gain = proj["noise_accuracy"] - none["noise_accuracy"]
    scaling = {}
    if "scaling" in results:
        grid = f"C = {', '.join(map(str, config.scaling_outputs))}"
        measured = results["scaling"]
        scaling = {
            f"exact step, automatic mode / faster mode (worst round, {grid})": _check(
                measured["exact_over_best"],
                "regularizers.exact_mode",
                at_most=MODE_SLOWDOWN_TARGET,
            ),
            f"reverse-mode cost per probe, max / min over {grid}": _check(
                measured["reverse_per_probe_spread"],
                "chunked probes",
                at_most=PER_PROBE_SPREAD_TARGET,
            ),
        }
    return {
        "||J||_F reduction, none / projection (n_proj=1)": _check(
            results["jacobian_reduction"], PAPER, at_least=REDUCTION_TARGET
        ),
        "clean accuracy drop with projection penalty (points)": _check(
            results["accuracy_drop_points"], PAPER, at_most=ACCURACY_DROP_TARGET
        ),
        f"projection step / plain step (worst of {TIMING_ROUNDS} rounds)": _check(
            results["projection_over_plain_step"], BENCHMARK, **speed
        ),
        f"accuracy gain under noise sigma={config.noise_sigma}, projection - none": (
            _check(gain, PAPER, above=0.0)
        ),
        **scaling,
    }


def _checks(results, study, closed) -> dict[str, dict]:
    """The other rows of the report, ``{name: Workdir.check keywords}``."""
    exact, proj = results["exact"], results["projection"]
    closed_form = {
        f"closed-form dR/d(W1, b1, W2) vs autodiff, {dtype}": _check(
            closed[dtype]["max_relative_error"], MATRIX_CALCULUS, at_most=tol
        )
        for dtype, tol in CLOSED_FORM_TOL.items()
    }
    slopes = {
        f"{m} variance vs num_projections, log-log slope": _check(
            study[m]["log_log_slope"], "Var ~ 1/n", close_to=-1.0, atol=SLOPE_TOL
        )
        for m in ESTIMATORS
        if "log_log_slope" in study[m]
    }
    b2 = [closed[dtype]["b2_max_abs"] for dtype in CLOSED_FORM_TOL]
    return {
        "mean ||J||_F, exact penalty / projection penalty": _check(
            exact["jacobian_frobenius"] / proj["jacobian_frobenius"],
            PAPER,
            info="close to 1 (n_proj=1 suffices)",
        ),
        **closed_form,
        "closed-form and autodiff dR/db2 (max abs; float32, float64)": _check(
            b2, "J does not depend on b2", at_most=0.0
        ),
        "estimators unbiased: max |mean - exact| / s.e. over all cells": _check(
            max(study[m]["max_z"] for m in ESTIMATORS), UNBIASED, below=UNBIASED_SIGMAS
        ),
        **slopes,
    }


def _tables(config, results, study, closed, workdir) -> None:
    columns = {
        "clean acc": "test_accuracy",
        "mean ||J||_F": "jacobian_frobenius",
        "mean ||grad_x loss||": "input_gradient_norm",
        f"acc, noise {config.noise_sigma}": "noise_accuracy",
        "step ms": "step_ms",
    }
    rows = [[mode, *(results[mode][k] for k in columns.values())] for mode in MODES]
    workdir.table(["mode", *columns], rows)
    epsilons = config.attack_epsilons
    attacks = [(c, i) for c in ("fgsm", "pgd") for i, e in enumerate(epsilons) if e > 0]
    header = ["mode", *(f"noise {s:g}" for s in config.noise_sigmas)]
    header += [f"{c.upper()} {epsilons[i]:g}" for c, i in attacks]
    rows = [
        [m, *results[m]["gaussian"], *(results[m][c][i] for c, i in attacks)]
        for m in MODES
    ]
    workdir.table(header, rows, title="Test accuracy under perturbations")
    header = ["dtype", "dW1", "db1", "dW2", "closed form ms", "autodiff ms"]
    rows = [
        [d, *c["relative_error"].values(), c["closed_form_ms"], c["autodiff_ms"]]
        for d, c in closed.items()
    ]
    title = (
        "Closed form for f(x) = tanh(x W1 + b1) W2 + b2, weights (in, out) (hidden "
        f"{config.closed_form_hidden}, mean over {config.closed_form_examples} test "
        "inputs; chainlab.regularizers.one_hidden_layer_mean_penalty_grad), relative "
        "errors against reverse-over-reverse autodiff"
    )
    workdir.table(header, rows, title=title)
    std = study["batch_relative_std"]
    workdir.note(
        f"Estimators on the unregularised model (exact ||J||_F^2 of test example 0: "
        f"{study['projection']['exact'][0]:.4g}). Relative std of one batch-"
        f"{config.batch_size} penalty estimate with n_proj = 1 (closed form, "
        f"chainlab.regularizers.penalty_relative_std): projection "
        f"{std['projection']:.3g}, forward projection {std['forward_projection']:.3g}."
    )
    if "scaling" in results:
        header = ["C", *(f"{name} ms" for name in SCALING_STEPS)]
        header += ["exact mode", "exact / faster, per round"]
        header += ["us per VJP", "us per JVP"]
        rows = [
            [
                row["outputs"],
                *(row[f"{name}_ms"] for name in SCALING_STEPS),
                row["exact_mode"],
                " / ".join(f"{r:.2f}" for r in row["exact_over_best_rounds"]),
                row["reverse_us_per_probe"],
                row["forward_us_per_probe"],
            ]
            for row in results["scaling"]["rows"]
        ]
        hidden = "-".join(map(str, config.hidden))
        title = (
            f"Step time against the number of outputs C (MLP 64-{hidden}-C, batch "
            f"{config.batch_size}, medians of {SCALING_ROUNDS} rounds; exact penalty "
            "by C VJPs (reverse) or 64 JVPs (forward), the mode exact_mode picks and "
            "its time over the faster one's; cost per probe = (penalty step - plain "
            "step) / probes. A JVP's work grows with C (the output layer), a VJP's "
            "does not: the exact method shares the basis vectors across examples)"
        )
        workdir.table(header, rows, title=title)
    if "sweep" in results:
        sweep = results["sweep"]
        rows = [
            [s, m, *(sweep[m][k][i] for k in SWEPT)]
            for i, s in enumerate(sweep["strengths"])
            for m in MODES[1:]
        ]
        header = ["strength", "method", "clean acc", "mean ||J||_F", "noisy acc"]
        workdir.table(header, rows, title="Strength sweep (first seed)")


def _seed_means(per_seed: list[dict]) -> dict:
    """Every measurement's mean over seeds, and the per-seed accuracy and ||J||_F."""
    means = {k: np.mean([m[k] for m in per_seed], axis=0).tolist() for k in per_seed[0]}
    for k in ("test_accuracy", "jacobian_frobenius"):
        means[f"{k}_per_seed"] = [m[k] for m in per_seed]
    return means


def run(config: ml_collections.ConfigDict, workdir: Workdir) -> dict:
    check_at_least("num_seeds", config.num_seeds, 1)
    model, description = _model(config)
    split = digits_for_classifier()
    seeds = [config.seed + i for i in range(config.num_seeds)]

    @cache  # the sweep reuses the main strength's first-seed runs
    def train(mode, strength, seed):
        return _train_and_evaluate(config, model, split, mode, strength, seed, workdir)

    results = {"strength": config.strength}
    for mode in MODES:
        results[mode] = _seed_means([train(mode, config.strength, s)[1] for s in seeds])
    timing = _step_times(config, model, split)
    for mode, times in timing.pop("per_mode").items():
        results[mode] |= times
    none, proj = results["none"], results["projection"]
    results |= timing | {
        "accuracy_drop_points": 100 * (none["test_accuracy"] - proj["test_accuracy"]),
        "jacobian_reduction": none["jacobian_frobenius"] / proj["jacobian_frobenius"],
        "noise_sigmas": list(config.noise_sigmas),
        "attack_epsilons": list(config.attack_epsilons),
    }
    reference = train("none", config.strength, seeds[0])[0]
    study = _estimator_study(config, model, reference, split.x_test)
    closed = _closed_form_check(config, split.x_test)
    results |= {"estimator_variance": study, "closed_form": closed}
    # The scaling grid (config.scaling_outputs) is about the MLP.
    if config.scaling_outputs and config.architecture == "mlp":
        results["scaling"] = _scaling(config, split)
    if config.sweep_strengths:
        results["sweep"] = {"strengths": list(config.sweep_strengths)}
        for method in MODES[1:]:
            sweep = [train(method, s, seeds[0])[1] for s in config.sweep_strengths]
            results["sweep"][method] = {k: [r[k] for r in sweep] for k in SWEPT}

    for name, goal in _goals(config, results).items():
        workdir.goal(name, judged=config.judge_training_goals, **goal)
    for name, check in _checks(results, study, closed).items():
        workdir.check(name, **check)
    workdir.note(
        f"Model: {description}, {config.steps} Adam steps of batch "
        f"{config.batch_size}, mean of {len(seeds)} seed(s). Penalty {config.strength} "
        f"||J||_F^2 (Hoffman et al.'s lambda_JR = {2 * config.strength:g}), J of the "
        "10 logits by the 64 inputs (pixels / 16). Noise is not clipped; attacked "
        f"images are clipped to [0, 1]. Step times: medians of {TIMING_ROUNDS} rounds "
        f"of turns in blocks of {TIMING_BLOCK} calls (PyTorch comparison: {BENCHMARK})"
        ". XLA compile options of the training steps: "
        f"{results['compiler_options'] or 'none (defaults)'}."
    )
    _tables(config, results, study, closed, workdir)
    _figures(config, results, study, workdir)
    return results

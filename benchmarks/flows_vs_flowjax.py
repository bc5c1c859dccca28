"""Coupling flows on two moons: chainlab against FlowJAX's ``coupling_flow``, one run.

Protocol (chainlab.data (two-moons protocol)): 8000 train / 2000 test points from
``chainlab.data.two_moons()``, standardised with the training mean and standard
deviation (the same for both libraries; the standardisation's log-det is added back,
so NLL is in nats per point on the raw coordinates). Both flows have the same
architecture: 8 affine coupling layers alternating which coordinate is transformed,
MLP conditioners of depth 2 and width 64 with ReLU, a standard normal base. FlowJAX:
``coupling_flow(flow_layers=8, nn_width=64, nn_depth=2)`` (softplus scale with a
minimum of 0.01, conditioners uniform on +-1/sqrt(fan_in)); chainlab: ``realnvp(2,
num_layers=8, hidden=(64, 64))`` (the same scale and hidden layers, zero-started
output layers). With ``--flows spline`` the transformers are rational-quadratic splines:
FlowJAX's ``RationalQuadraticSpline(knots=8, interval=4)`` (its default spline: 8
inner knots, so 9 bins, on [-4, 4], end derivatives learned) against chainlab's
``neural_spline_flow`` as ``realnvp_moons`` configures it (8 bins on [-5, 5], end
derivatives 1). Both train for 3000 steps of 256 on the same batch sequence, from
``--seeds`` initialisations each, under two optimizers, and report the test NLL of the
final parameters (no early stopping):

- ``adam``: Adam 1e-3, the reference protocol for FlowJAX (0.38 nats, the figure
  ``realnvp_moons`` must beat);
- ``recipe``: ``realnvp_moons``' optimizer (linear warm-up to 1e-2, cosine decay,
  gradient-norm clipping at 1; the spline flows peak at 3e-3), given to both
  libraries, so a difference in NLL is a difference of the flows, not of the
  optimizer.

Timing: one training step (loss, gradient, Adam update; batch 256), jitted, the median
of ``--repeats`` calls after compilation, in ``--rounds`` interleaved rounds so the
machine's load shows in the spread. FlowJAX is timed twice: with its own step
(``flowjax.train.train_utils.step``, ``eqx.filter_jit``) and with the same loss under a
plain ``jax.jit`` on the partitioned parameters, which separates equinox's dispatch
overhead from the compiled program. The ratio uses FlowJAX's own step.

Install (FlowJAX lives in the bench venv, never in chainlab's)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install -e '.[bench]'

Run::

    .venv-bench/bin/python benchmarks/flows_vs_flowjax.py [--seeds 0 1 2] [--rounds 2]

Exit status 1 unless, for each flow, chainlab's mean test NLL is below FlowJAX's under
each optimizer and its step is faster than FlowJAX's own in every round.
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from chainlab.data import two_moons
from chainlab.flows import neural_spline_flow, realnvp, standardize
from chainlab.runner import get_config
from chainlab.training import make_step, median_step_ms

FLOWJAX_REFERENCE_NLL = 0.38  # FlowJAX coupling_flow, Adam 1e-3, this protocol
STEPS = 3000
BATCH = 256
LEARNING_RATE = 1e-3
LAYERS, WIDTH, DEPTH = 8, 64, 2
FLOWJAX_KNOTS, FLOWJAX_INTERVAL = 8, 4  # FlowJAX's spline: inner knots, half-width
LIBRARIES = ("chainlab", "flowjax")
OPTIMIZERS = ("adam", "recipe")
FLOWS = ("affine", "spline")


def _batches(n: int, seed: int, steps: int) -> np.ndarray:
    """``(steps, BATCH)`` indices: shuffled epochs, shared by both libraries."""
    rng = np.random.default_rng(seed)
    per_epoch = n // BATCH
    epochs = -(-steps // per_epoch)
    rows = [
        rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH)
        for _ in range(epochs)
    ]
    return np.concatenate(rows)[:steps]


def _train(step, params, opt_state, x, batches):
    start = time.perf_counter()
    for indices in batches:
        params, opt_state, loss = step(params, opt_state, x[indices])
    jax.block_until_ready(params)
    return params, time.perf_counter() - start


def _optimizer(name: str, steps: int, flow: str) -> optax.GradientTransformation:
    """``"adam"``: the reference Adam 1e-3; ``"recipe"``: realnvp_moons' optimizer
    for ``flow``."""
    if name == "adam":
        return optax.adam(LEARNING_RATE)
    config = get_config("realnvp_moons")
    peak = config.learning_rate if flow == "affine" else config.spline_learning_rate
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, peak, min(config.warmup_steps, steps // 2), steps
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule)
    )


def chainlab_side(mean, std, seed, optimizer, kind="affine"):
    """``(step, params, opt_state, test_loss)`` for chainlab's RealNVP (or spline
    coupling flow)."""
    shared = dict(
        num_layers=LAYERS, hidden=(WIDTH,) * DEPTH, preprocess=standardize(mean, std)
    )
    if kind == "affine":
        flow = realnvp(2, **shared)
    else:
        config = get_config("realnvp_moons")
        flow = neural_spline_flow(
            2, bins=config.spline_bins, bound=config.spline_bound, **shared
        )

    def loss_fn(params, x):
        return -jnp.mean(flow.log_prob(params, x))

    train_step = make_step(lambda params, x, key: loss_fn(params, x), optimizer)

    def step(params, opt_state, x):
        params, opt_state, metrics = train_step(params, opt_state, x, None)
        return params, opt_state, metrics["loss"]

    params = flow.init(jax.random.key(seed))
    return step, params, optimizer.init(params), jax.jit(loss_fn)


def flowjax_side(mean, std, seed, optimizer, kind="affine"):
    """``(own_step, plain_step, params, opt_state, test_loss)`` for FlowJAX."""
    import equinox as eqx
    import paramax
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow
    from flowjax.train.losses import MaximumLikelihoodLoss
    from flowjax.train.train_utils import step as flowjax_step

    transformer = None  # FlowJAX's default: affine
    if kind == "spline":
        transformer = RationalQuadraticSpline(
            knots=FLOWJAX_KNOTS, interval=FLOWJAX_INTERVAL
        )
    flow = coupling_flow(
        jax.random.key(seed),
        base_dist=Normal(jnp.zeros(2)),
        transformer=transformer,
        flow_layers=LAYERS,
        nn_width=WIDTH,
        nn_depth=DEPTH,
    )
    params, static = eqx.partition(
        flow,
        eqx.is_inexact_array,
        is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable),
    )
    log_std = float(np.sum(np.log(std)))
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    mle = MaximumLikelihoodLoss()

    def own_step(params, opt_state, x):
        return flowjax_step(
            params,
            static,
            (x - mean[None]) / std[None],
            optimizer=optimizer,
            opt_state=opt_state,
            loss_fn=mle,
            key=jax.random.key(0),
        )

    def loss_fn(params, x):
        dist = paramax.unwrap(eqx.combine(params, static))
        return -jnp.mean(dist.log_prob((x - mean[None]) / std[None])) + log_std

    @jax.jit
    def plain_step(params, opt_state, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return own_step, plain_step, params, optimizer.init(params), jax.jit(loss_fn)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--optimizers", nargs="+", default=["adam", "recipe"], choices=OPTIMIZERS
    )
    parser.add_argument("--flows", nargs="+", default=list(FLOWS), choices=FLOWS)
    parser.add_argument(
        "--steps", type=int, default=STEPS, help="fewer for a smoke test only"
    )
    args = parser.parse_args(argv)

    data = two_moons()
    x_train = jnp.asarray(data.x_train)
    x_test = jnp.asarray(data.x_test)
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, {args.steps} steps "
        f"of {BATCH}, flows {args.flows}, optimizers {args.optimizers}, "
        f"seeds {args.seeds}"
    )

    nll = {
        (kind, lib, opt): []
        for kind in args.flows
        for opt in args.optimizers
        for lib in LIBRARIES
    }
    for kind in args.flows:
        for opt in args.optimizers:
            for seed in args.seeds:
                batches = _batches(len(x_train), seed, args.steps)
                step, params, state, loss = chainlab_side(
                    mean, std, seed, _optimizer(opt, args.steps, kind), kind
                )
                params, seconds = _train(step, params, state, x_train, batches)
                nll[kind, "chainlab", opt].append(float(loss(params, x_test)))
                own, _, fj_params, fj_state, fj_loss = flowjax_side(
                    mean, std, seed, _optimizer(opt, args.steps, kind), kind
                )
                fj_params, fj_seconds = _train(
                    own, fj_params, fj_state, x_train, batches
                )
                nll[kind, "flowjax", opt].append(float(fj_loss(fj_params, x_test)))
                print(
                    f"{kind:>6} {opt:>6} seed {seed}: test NLL "
                    f"chainlab {nll[kind, 'chainlab', opt][-1]:.4f}, "
                    f"FlowJAX {nll[kind, 'flowjax', opt][-1]:.4f}  (training wall s: "
                    f"{seconds:.1f} vs {fj_seconds:.1f})",
                    flush=True,
                )

    batch = x_train[:BATCH]
    names = ("chainlab", "flowjax", "flowjax, plain jax.jit")
    timings = {(kind, name): [] for kind in args.flows for name in names}
    steps = {}
    for kind in args.flows:
        adam = _optimizer("adam", args.steps, kind)
        step, params, state, _ = chainlab_side(mean, std, 0, adam, kind)
        own, plain, fj_params, fj_state, _ = flowjax_side(mean, std, 0, adam, kind)
        steps[kind] = (
            ("chainlab", step, params, state),
            ("flowjax", own, fj_params, fj_state),
            ("flowjax, plain jax.jit", plain, fj_params, fj_state),
        )
    for _ in range(args.rounds):
        for kind in args.flows:
            for name, fn, p, o in steps[kind]:
                timings[kind, name].append(
                    median_step_ms(fn, p, o, batch, repeats=args.repeats)
                )

    print("\n| flow | optimizer | library | test NLL mean +- std (nats) | per seed |")
    print("|---|---|---|---|---|")
    for (kind, lib, opt), values in nll.items():
        print(
            f"| {kind} | {opt} | {lib} | {np.mean(values):.4f} +- "
            f"{np.std(values):.4f} | " + ", ".join(f"{v:.4f}" for v in values) + " |"
        )
    print("\n| flow | step (batch 256) | ms per round |")
    print("|---|---|---|")
    for (kind, name), values in timings.items():
        print(f"| {kind} | {name} | " + ", ".join(f"{t:.3f}" for t in values) + " |")
    print()
    better, faster = True, True
    for kind in args.flows:
        for opt in args.optimizers:
            ours, fj = (np.mean(nll[kind, lib, opt]) for lib in LIBRARIES)
            print(f"test NLL ratio FlowJAX / chainlab ({kind}, {opt}): {fj / ours:.3f}")
            better &= bool(ours < fj)
        for name in names[1:]:
            ratios = [
                f / c
                for f, c in zip(
                    timings[kind, name], timings[kind, "chainlab"], strict=True
                )
            ]
            print(
                f"step-time ratio {name} / chainlab ({kind}) per round: "
                + ", ".join(f"{r:.2f}x" for r in ratios)
            )
        faster &= all(
            t > c
            for t, c in zip(
                timings[kind, "flowjax"], timings[kind, "chainlab"], strict=True
            )
        )
    print(
        f"(FlowJAX reference figure, affine, Adam 1e-3: {FLOWJAX_REFERENCE_NLL} nats)"
    )
    return 0 if better and faster else 1


if __name__ == "__main__":
    sys.exit(main())

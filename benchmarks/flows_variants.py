"""Variants of chainlab's affine coupling flow on two moons, 20 seeds, Adam 1e-3.

The question: is there a change to chainlab's affine RealNVP, one component at a
time, that makes it train faster under a constant Adam 1e-3 than FlowJAX's
``coupling_flow`` (the one row of ``flows_vs_flowjax.py`` where chainlab is behind)?
Each row is chainlab's ``realnvp(2, num_layers=8, hidden=(64, 64))`` built from
chainlab's own pieces (:func:`chainlab.flows.affine_coupling` with the softplus scale,
:func:`chainlab.flows.scan`, :func:`chainlab.flows.standardize`) around a conditioner
that differs from :func:`chainlab.flows.mlp_conditioner` in one place:

- ``default``: none (hidden weights and biases uniform on ``+-1/sqrt(fan_in)``, zero
  output layer, ReLU);
- ``output uniform`` / ``output uniform x0.1``: the output layer drawn like the hidden
  ones (FlowJAX's), or at a tenth of that;
- ``first fan-in 1``: the first layer's bound from the one kept entry, not the
  masked 2-vector;
- an activation in place of ReLU;
- ``weights xg``: hidden weights uniform on ``+-g/sqrt(fan_in)`` (``g = sqrt(6)``:
  He et al. 2015's initialisation for ReLU), also on the first or later layers only,
  and with the biases' bound scaled;
- ``linear skip``: a zero-started linear map from the input added to the output.

The last row is FlowJAX's ``coupling_flow`` as ``flows_vs_flowjax.py`` builds it.
Every run: Adam 1e-3 (``--optimizer recipe``: ``realnvp_moons``' warm-up and cosine
schedule, as ``flows_vs_flowjax.py`` gives both libraries), 3000 steps of 256 on the
batch sequence ``flows_vs_flowjax.py`` uses for that seed, test NLL of the final
parameters (nats per point on the raw coordinates). A row's seeds train together,
``jax.vmap`` over a ``lax.scan`` of the steps (FlowJAX's: one ``lax.scan`` per seed).
Training at this budget is chaotic: the same seed trained by a Python loop of jitted
steps ends up to 0.02 nats away, so compare means over many seeds.

Run (about 2 minutes per row on 2 CPU cores)::

    .venv-bench/bin/python benchmarks/flows_variants.py [--seeds ...] [--only LABEL ...]
"""

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flows_ablation import _stack, train_seeds
from flows_vs_flowjax import (
    DEPTH,
    LAYERS,
    OPTIMIZERS,
    STEPS,
    WIDTH,
    _batches,
    _optimizer,
    flowjax_side,
)

from chainlab.data import two_moons
from chainlab.flows import (
    Conditioner,
    affine_coupling,
    chain,
    half_mask,
    scan,
    standardize,
    transformed,
)

HE = math.sqrt(6)
VARIANTS = {
    "default": {},
    "output uniform": dict(output_gain=1.0),
    "output uniform x0.1": dict(output_gain=0.1),
    "first fan-in 1": dict(first_fan_in=1),
    "SiLU": dict(activation=jax.nn.silu),
    "GELU": dict(activation=jax.nn.gelu),
    "tanh": dict(activation=jnp.tanh),
    "ELU": dict(activation=jax.nn.elu),
    "leaky ReLU 0.1": dict(activation=lambda x: jax.nn.leaky_relu(x, 0.1)),
    "weights x sqrt(6) (He)": dict(weight_gain=HE),
    "weights x2": dict(weight_gain=2.0),
    "weights x4": dict(weight_gain=4.0),
    "He on the first layer only": dict(first_gain=HE),
    "He on the later layer only": dict(weight_gain=HE, first_gain=1.0),
    "He, zero biases": dict(weight_gain=HE, bias_gain=0.0),
    "He, biases x0.5": dict(weight_gain=HE, bias_gain=0.5),
    "He, biases x2": dict(weight_gain=HE, bias_gain=2.0),
    "biases x3": dict(bias_gain=3.0),
    "linear skip": dict(skip=True),
}
FLOWJAX_ROW = "FlowJAX coupling_flow (library)"


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def conditioner(
    activation=jax.nn.relu,
    weight_gain=1.0,
    bias_gain=1.0,
    output_gain=0.0,
    first_fan_in=None,
    first_gain=None,
    skip=False,
) -> Conditioner:
    """A ``2 -> 64 -> 64 -> 2 x 2`` conditioner, ``mlp_conditioner`` but for the
    given change."""
    sizes = (2, *(WIDTH,) * DEPTH)

    def init(key):
        keys = jax.random.split(key, DEPTH + 2)
        layers = []
        pairs = zip(keys, sizes[:-1], sizes[1:], strict=False)
        for i, (k, fan_in, fan_out) in enumerate(pairs):
            first = i == 0
            bound = 1 / math.sqrt(first_fan_in if first and first_fan_in else fan_in)
            gain = first_gain if first and first_gain is not None else weight_gain
            w_key, b_key = jax.random.split(k)
            layers.append(
                {
                    "w": _uniform(w_key, (fan_in, fan_out), gain * bound),
                    "b": _uniform(b_key, (fan_out,), bias_gain * bound),
                }
            )
        bound = output_gain / math.sqrt(sizes[-1])
        w_key, b_key = jax.random.split(keys[-2])
        layers.append(
            {
                "w": _uniform(w_key, (sizes[-1], 4), bound),
                "b": _uniform(b_key, (4,), bound),
            }
        )
        if skip:
            layers.append({"w": jnp.zeros((2, 4))})
        return layers

    def apply(params, x, context=None):
        del context
        body, last = (params[:-2], params[-2]) if skip else (params[:-1], params[-1])
        h = x
        for layer in body:
            h = activation(h @ layer["w"] + layer["b"])
        out = h @ last["w"] + last["b"]
        if skip:
            out = out + x @ params[-1]["w"]
        return jnp.swapaxes(out.reshape(-1, 2, 2), 1, 2)

    return Conditioner(init, apply, 2)


def variant_flow(mean, std, **change):
    """chainlab's affine RealNVP on raw two-moons points, with ``change``."""
    net = conditioner(**change)
    masks = jnp.stack([half_mask(2, flip=k % 2 == 1) for k in range(LAYERS)])
    body = scan(lambda m: affine_coupling(m, net, scale="softplus"), masks)
    return transformed(chain(standardize(mean, std), body), (2,))


def chainlab_row(change, optimizer, mean, std, x_train, x_test, seeds, indices):
    """Test NLL per seed of the flow with ``change``, trained by ``optimizer``."""
    flow = variant_flow(mean, std, **change)

    def loss(params, x):
        return -jnp.mean(flow.log_prob(params, x))

    params = _stack([flow.init(jax.random.key(seed)) for seed in seeds])
    final = train_seeds(loss, params, x_train, indices, optimizer)
    return np.asarray(jax.jit(jax.vmap(loss, (0, None)))(final, x_test))


def flowjax_row(optimizer, mean, std, x_train, x_test, seeds, indices):
    """Test NLL per seed of FlowJAX's flow trained by ``optimizer``."""
    nll = []
    for seed, idx in zip(seeds, indices, strict=True):
        _, plain, params, state, test_loss = flowjax_side(mean, std, seed, optimizer)

        @jax.jit
        def run(params, state, idx, plain=plain):
            def body(carry, i):
                params, state, value = plain(*carry, x_train[i])
                return (params, state), value

            return jax.lax.scan(body, (params, state), idx)[0][0]

        nll.append(float(test_loss(run(params, state, idx), x_test)))
    return np.asarray(nll)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--steps", type=int, default=STEPS, help="fewer: smoke test")
    parser.add_argument("--only", nargs="*", help="row labels to run (default all)")
    parser.add_argument(
        "--optimizer",
        default="adam",
        choices=OPTIMIZERS,
        help="adam: Adam 1e-3; recipe: realnvp_moons' (as flows_vs_flowjax.py)",
    )
    args = parser.parse_args(argv)
    optimizer = _optimizer(args.optimizer, args.steps, "affine")

    data = two_moons()
    x_train, x_test = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    indices = jnp.asarray(
        np.stack([_batches(len(x_train), s, args.steps) for s in args.seeds])
    )
    print(
        f"jax {jax.__version__}, {args.steps} steps of 256, {args.optimizer}, "
        f"seeds {args.seeds}",
        flush=True,
    )
    results = []
    for label in (*VARIANTS, FLOWJAX_ROW):
        if args.only and label not in args.only:
            continue
        start = time.perf_counter()
        shared = (mean, std, x_train, x_test, args.seeds, indices)
        if label == FLOWJAX_ROW:
            nll = flowjax_row(optimizer, *shared)
        else:
            nll = chainlab_row(VARIANTS[label], optimizer, *shared)
        results.append((label, nll))
        print(
            f"{label}: {nll.mean():.4f} +- {nll.std(ddof=1):.4f} "
            f"[{time.perf_counter() - start:.0f} s]",
            flush=True,
        )
    print("\n| variant | test NLL mean +- std (nats) | first five seeds |")
    print("|---|---|---|")
    for label, nll in results:
        print(
            f"| {label} | {nll.mean():.4f} +- {nll.std(ddof=1):.4f} | "
            f"{nll[:5].mean():.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

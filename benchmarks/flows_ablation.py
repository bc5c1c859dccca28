"""Ablation: chainlab's affine RealNVP moved toward FlowJAX's coupling flow, one
component at a time, on the two-moons protocol under Adam 1e-3.

Both libraries' flows are 8 affine couplings on standardised 2-D data with MLP
conditioners (width 64, depth 2, ReLU) and a standard normal base. "chainlab" below
means chainlab's choices when this ablation was written (its rows A); the ablation led
chainlab to take FlowJAX's hidden-layer initialisation and softplus scale as its
defaults, so the library row now runs those. They differ in:

- ``body``: hidden-layer initialisation. chainlab: LeCun-normal weights (the first
  layer sees the masked 2-vector, fan-in 2), zero biases; FlowJAX (``eqx.nn.MLP``):
  weights and biases uniform on ``+-1/sqrt(fan_in)`` (the first layer sees only the
  kept coordinate, fan-in 1).
- ``last``: output layer. chainlab: zeros (a new flow is the identity); FlowJAX:
  uniform like the others (a new flow is a random affine flow).
- ``scale``: chainlab ``log s = a tanh(r)`` with a learned ``a`` (initially 1), so
  ``|log s| <= a``; FlowJAX ``s = softplus(r + softplus^-1(0.99)) + 0.01``, unbounded
  above. Two more rows separate the bound from the shape: ``log s = r``
  (unbounded, no tanh) and chainlab's tanh with ``a`` initialised to 3.
- ``direction`` and ``first``, controls: both libraries compute ``z = x s + t`` in
  the density direction ``x -> z`` (FlowJAX's flow is ``Invert``-ed, so its
  ``log_prob`` runs the couplings' ``transform``) and both first transform ``x_1``
  given ``x_0`` (FlowJAX's coupling keeps ``x[:1]``, then ``Flip``-s). The rows flip
  them anyway: ``z = (x - t) / s``, and ``x_0`` transformed first.
- ``base``: chainlab's base is a fixed standard normal; FlowJAX's ``Normal(zeros(2))``
  has a ``loc`` and a softplus-parametrised ``scale`` that ``eqx.is_inexact_array``
  counts as parameters, so ``flows_vs_flowjax.py`` trains them: one more elementwise
  affine layer ``z -> (z - loc) / scale`` at the latent end.

Rows: chainlab's ``realnvp`` and FlowJAX's ``coupling_flow`` themselves (as built by
``flows_vs_flowjax.py``), and a re-implementation of the coupling flow with the six
switches above (with FlowJAX's choices and FlowJAX's initial parameters copied in, it
reproduces FlowJAX's ``log_prob``: the script prints the largest difference),
starting from chainlab's choices with one switch flipped per row, then
FlowJAX's choices with one switch flipped back per row. Every run: Adam 1e-3, 3000
steps of 256 on the batch sequence ``flows_vs_flowjax.py`` uses for that seed, test
NLL of the final parameters (nats per point on the raw coordinates). The seeds of a
row train together under ``jax.vmap`` and the steps run in a ``lax.scan`` (the same
arithmetic as separate runs up to float32 rounding).

Run::

    .venv-bench/bin/python benchmarks/flows_ablation.py [--seeds 0 1 2 3 4]
"""

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flows_vs_flowjax import (
    BATCH,
    DEPTH,
    LAYERS,
    LEARNING_RATE,
    STEPS,
    WIDTH,
    _batches,
    chainlab_side,
    flowjax_side,
)

from chainlab.data import two_moons

CHAINLAB = dict(
    body="lecun",
    last="zero",
    scale="tanh",
    direction="forward",
    first="x1",
    base="fixed",
)
FLOWJAX = dict(
    body="uniform",
    last="uniform",
    scale="softplus",
    direction="forward",
    first="x1",
    base="learned",
)
CONTROLS = dict(direction="inverse", first="x0")  # neither library's choice
INV_SOFTPLUS_099 = math.log(math.expm1(0.99))


def _uniform(key, shape, fan_in):
    bound = 1 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def _init_layer(key, config):
    """One coupling's conditioner ``1 -> WIDTH (x DEPTH) -> 2`` and its ``a``."""
    sizes = (1, *(WIDTH,) * DEPTH, 2)
    keys = jax.random.split(key, 2 * len(sizes))
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        kind = config["last"] if last else config["body"]
        if kind == "zero":
            w, b = jnp.zeros((fan_in, fan_out)), jnp.zeros(fan_out)
        elif kind == "lecun":
            # chainlab's first layer sees the masked 2-vector: fan-in 2.
            shape = (2 if i == 0 else fan_in, fan_out)
            w = jax.nn.initializers.lecun_normal()(keys[2 * i], shape)[:fan_in]
            b = jnp.zeros(fan_out)
        else:
            w = _uniform(keys[2 * i], (fan_in, fan_out), fan_in)
            b = _uniform(keys[2 * i + 1], (fan_out,), fan_in)
        layers.append({"w": w, "b": b})
    return {"net": layers, "a": jnp.full((), config.get("a0", 1.0))}


def _base_init():
    return {"loc": jnp.zeros(2), "raw": jnp.full(2, math.log(math.expm1(1.0)))}


def make_flow(config):
    """``(init, loss)`` of the re-implemented coupling flow under ``config``."""

    def init(key):
        layers = [_init_layer(k, config) for k in jax.random.split(key, LAYERS)]
        return {"layers": layers, "base": _base_init()}

    def log_prob(params, x):
        logdet = jnp.zeros(x.shape[0])
        for k, layer in enumerate(params["layers"]):
            transformed = (k + (config["first"] == "x1")) % 2  # chainlab: x1 first
            kept, h = x[:, 1 - transformed], x[:, 1 - transformed][:, None]
            for dense in layer["net"][:-1]:
                h = jax.nn.relu(h @ dense["w"] + dense["b"])
            out = h @ layer["net"][-1]["w"] + layer["net"][-1]["b"]
            shift, raw = out[:, 0], out[:, 1]
            if config["scale"] == "tanh":
                log_s = layer["a"] * jnp.tanh(raw)
            elif config["scale"] == "exp":
                log_s = raw
            else:
                log_s = jnp.log(jax.nn.softplus(raw + INV_SOFTPLUS_099) + 0.01)
            v = x[:, transformed]
            if config["direction"] == "forward":
                v, log_s = v * jnp.exp(log_s) + shift, log_s
            else:
                v, log_s = (v - shift) * jnp.exp(-log_s), -log_s
            logdet = logdet + log_s
            x = jnp.stack([kept, v] if transformed else [v, kept], axis=1)
        if config["base"] == "learned":
            scale = jax.nn.softplus(params["base"]["raw"])
            x = (x - params["base"]["loc"]) / scale
            logdet = logdet - jnp.sum(jnp.log(scale))
        base = -0.5 * jnp.sum(x**2, axis=1) - jnp.log(2 * jnp.pi)
        return base + logdet

    return init, log_prob


def flowjax_agreement(z: jax.Array, seed: int = 0) -> float:
    """Largest ``|log p|`` difference on ``z`` between FlowJAX's ``coupling_flow`` and
    the re-implementation with FlowJAX's choices and FlowJAX's initial parameters."""
    import paramax
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow

    flow = paramax.unwrap(
        coupling_flow(
            jax.random.key(seed),
            base_dist=Normal(jnp.zeros(2)),
            flow_layers=LAYERS,
            nn_width=WIDTH,
            nn_depth=DEPTH,
        )
    )
    mlp = flow.bijection.bijection.bijection.bijections[0].conditioner
    layers = [
        {
            "net": [{"w": d.weight[k].T, "b": d.bias[k]} for d in mlp.layers],
            "a": jnp.ones(()),
        }
        for k in range(LAYERS)
    ]
    base = flow.base_dist.bijection
    params = {
        "layers": layers,
        "base": {"loc": base.loc, "raw": jnp.log(jnp.expm1(base.scale))},
    }
    _, log_prob = make_flow(FLOWJAX)
    return float(jnp.max(jnp.abs(log_prob(params, z) - flow.log_prob(z))))


def train_seeds(loss_fn, params, x_train, indices, optimizer=None):
    """``optimizer`` (default Adam 1e-3) on each seed's batches; ``params`` and
    ``indices`` stacked by seed."""
    optimizer = optimizer or optax.adam(LEARNING_RATE)

    def one(p, idx):
        def body(carry, i):
            p, state = carry
            grads = jax.grad(loss_fn)(p, x_train[i])
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(body, (p, optimizer.init(p)), idx)
        return p

    return jax.jit(jax.vmap(one))(params, indices)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=STEPS, help="fewer: smoke test")
    parser.add_argument("--only", nargs="*", help="row labels to run (default all)")
    args = parser.parse_args(argv)

    data = two_moons()
    x_train, x_test = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    log_std = float(np.sum(np.log(std)))
    z_train = (x_train - mean) / std
    z_test = (x_test - mean) / std
    indices = jnp.asarray(
        np.stack([_batches(len(x_train), s, args.steps) for s in args.seeds])
    )
    adam = optax.adam(LEARNING_RATE)
    print(
        f"jax {jax.__version__}, {args.steps} steps of {BATCH}, Adam {LEARNING_RATE}, "
        f"seeds {args.seeds}",
        flush=True,
    )

    print(
        "re-implementation vs FlowJAX, log p at FlowJAX's init (seed 0), max |diff|: "
        f"{flowjax_agreement(z_test):.1e}",
        flush=True,
    )
    rows = []

    def library(label, side):
        def run():
            built = [side(mean, std, s, adam) for s in args.seeds]
            loss = built[0][-1]
            params = _stack([b[-3] for b in built])
            return loss, params, x_train, x_test

        rows.append((label, run))

    def reimpl(label, config):
        def run():
            init, log_prob = make_flow(config)

            def loss(p, z):
                return -jnp.mean(log_prob(p, z)) + log_std

            params = _stack([init(jax.random.key(s)) for s in args.seeds])
            return loss, params, z_train, z_test

        rows.append((label, run))

    library("chainlab realnvp (library, current defaults)", chainlab_side)
    reimpl("A: chainlab's former choices (re-implementation)", CHAINLAB)
    for name in ("body", "last", "scale", "base"):
        reimpl(f"A + {name} = {FLOWJAX[name]}", {**CHAINLAB, name: FLOWJAX[name]})
    for name, other in CONTROLS.items():
        reimpl(f"A + {name} = {other} (control)", {**CHAINLAB, name: other})
    reimpl(
        "A + body, last = uniform (FlowJAX's whole init)",
        {**CHAINLAB, "body": "uniform", "last": "uniform"},
    )
    reimpl("A + scale = exp (log s = r, unbounded)", {**CHAINLAB, "scale": "exp"})
    reimpl("A + a initialised to 3 (tanh bound 3)", {**CHAINLAB, "a0": 3.0})
    reimpl(
        "A + body = uniform, scale = softplus",
        {**CHAINLAB, "body": "uniform", "scale": "softplus"},
    )
    reimpl(
        "A + scale = softplus, base = learned",
        {**CHAINLAB, "scale": "softplus", "base": "learned"},
    )
    reimpl("B: FlowJAX's choices (re-implementation)", FLOWJAX)
    for name in ("body", "last", "scale", "base"):
        reimpl(f"B + {name} = {CHAINLAB[name]}", {**FLOWJAX, name: CHAINLAB[name]})
    library("FlowJAX coupling_flow (library)", flowjax_side)

    results = []
    for label, run in rows:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        start = time.perf_counter()
        loss, params, train, test = run()
        final = train_seeds(loss, params, train, indices)
        nll = [
            float(loss(jax.tree.map(lambda leaf, i=i: leaf[i], final), test))
            for i in range(len(args.seeds))
        ]
        results.append((label, nll))
        print(
            f"{label}: {np.mean(nll):.4f} +- {np.std(nll):.4f} ("
            + ", ".join(f"{v:.4f}" for v in nll)
            + f")  [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )

    print("\n| row | test NLL mean +- std (nats) | per seed |")
    print("|---|---|---|")
    for label, nll in results:
        print(
            f"| {label} | {np.mean(nll):.4f} +- {np.std(nll):.4f} | "
            + ", ".join(f"{v:.3f}" for v in nll)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

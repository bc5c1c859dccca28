"""Jacobian regularization: chainlab (JAX) against PyTorch double backprop, per step.

Protocol: the MLP 64-128-128-10 with tanh, a batch of 64 digits (x / 16),
cross-entropy plus strength * mean_batch ||J||_F^2 (J: logits with respect to inputs),
one Adam step. Three training steps on each side:

- plain: cross-entropy only;
- projection: Hoffman et al.'s estimator with one projection (a random unit vector v
  per example, C ||v^T J||^2);
- exact: all C = 10 rows of J.

The PyTorch side is the reference algorithm of facebookresearch/jacobian_regularizer
(``JacobianReg``): ``torch.autograd.grad(logits, x, v, create_graph=True)`` for each
projection (for ``exact``, one pass per class with one-hot v), then ``backward`` through
it (double backprop). It is re-implemented here so that nothing but torch is needed;
its penalty is ||J||_F^2 (the library's has an extra 1/2, which only rescales the
strength). chainlab uses ``chainlab.regularizers.jacobian_penalty`` under
``jax.jit``, taking the logits for the cross-entropy from the penalty's forward pass
(``return_outputs=True``), as the reference reuses its logits; its steps are
``chainlab.training.make_packed_step``: the step ``fit`` takes (``make_step``) on
the parameters packed into one vector, its inputs donated, so that a call passes 4
arrays in and out instead of 19 (a reference row times the exact step as
``make_step`` builds it). Before timing, the
exact-penalty loss and its parameter gradients are compared between the two (same
weights, same batch): they must agree to 1e-4.

Goals: chainlab's projection step <= 0.40x PyTorch's projection step and <= 3x
chainlab's own plain step; chainlab's exact step <= 0.35x PyTorch's exact step.

Timing: the median of ``--repeats`` calls, compilation and warm-up excluded; within
a round the steps take turns in blocks of 25 calls, so chainlab and PyTorch are
sampled over the same stretch of a shared machine's drifting speed. ``--rounds``
rounds show how much the numbers still move: report every round. PyTorch runs with
its default thread count (as the reference code does) and with one thread (often
faster for such small matrices on a loaded machine); ratios are printed against both,
and the faster PyTorch setting gives the stricter test.
Process CPU time per step (all threads) is printed too, as it moves less with the load.

chainlab's steps compile as the ``jacobian_regularization`` experiment's do: with
``chainlab.compilation.eigen_matmul_options()``, which on the CPU keeps the matrix
products out of XLA's YNNPACK fusions (about 20% off the exact step). A reference row
times the exact step as a plain ``jax.jit`` compiles it (XLA's defaults), reported for
information, and so do rows for the projection step on the parameter pytree
(``make_step``) and under XLA's defaults. ``--xla-option NAME=VALUE`` (repeatable)
replaces the options.

Install (PyTorch lives in its own venv, never in chainlab's)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install torch    # a CPU build is enough
    .venv-bench/bin/pip install -e '.[bench]'

Run::

    .venv-bench/bin/python benchmarks/jacobian_vs_pytorch.py [--repeats N] [--rounds R]
        [--xla-option NAME=VALUE ...]

Without torch the PyTorch side is skipped with a message and only chainlab is timed.
Exit status 1 when the two implementations disagree.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from torch_models import linear_layers, torch_mlp

from chainlab.compilation import eigen_matmul_options
from chainlab.data import digits_for_classifier
from chainlab.losses import cross_entropy
from chainlab.models import MLP, dense_layers
from chainlab.regularizers import jacobian_penalty
from chainlab.training import (
    classification_loss,
    interleaved_median_ms,
    make_packed_step,
    make_step,
    stepping,
)

BATCH = 64
HIDDEN = (128, 128)
NUM_CLASSES = 10
STRENGTH = 0.01
LEARNING_RATE = 1e-3
AGREEMENT = 1e-4  # exact-penalty loss and gradients, relative L2, float32
# Speed goals: the reference re-implemented below is the baseline to beat.
PROJECTION_VS_TORCH = 0.40
PROJECTION_VS_PLAIN = 3.0
EXACT_VS_TORCH = 0.35
MODES = ("plain", "projection", "exact")
REFERENCES = (  # timed for information, beside the three steps
    "projection, pytree",
    "exact, pytree",
    "projection, XLA defaults",
    "exact, XLA defaults",
)


def _batch():
    split = digits_for_classifier()
    return split.x_train[:BATCH], split.y_train[:BATCH]


def _jax_calls(params, batch, compiler_options):
    """``({mode: call}, exact_grad)``: a call takes one step from where the last
    left off (``chainlab.training.stepping``)."""
    model = MLP((*HIDDEN, NUM_CLASSES))
    optimizer = optax.adam(LEARNING_RATE)

    def penalised(method):
        def loss_fn(params, batch, key):
            # The logits come from the penalty's forward pass, as in the reference.
            logits, penalty = jacobian_penalty(
                model.apply,
                params,
                batch[0],
                method=method,
                key=key,
                return_outputs=True,
            )
            return jnp.mean(cross_entropy(logits, batch[1])) + STRENGTH * penalty

        return loss_fn

    losses = {"plain": classification_loss(model.apply)}
    losses.update({method: penalised(method) for method in ("projection", "exact")})
    key = jax.random.key(1)
    calls = {}
    for mode, loss_fn in losses.items():
        packed = make_packed_step(
            loss_fn, optimizer, params, compiler_options=compiler_options
        )
        calls[mode] = stepping(packed.step, packed.params, packed.opt_state, batch, key)
    # For reference: the steps as make_step builds them (parameters as a pytree).
    for mode in ("projection", "exact"):
        step = make_step(losses[mode], optimizer, compiler_options=compiler_options)
        calls[f"{mode}, pytree"] = stepping(
            step, params, optimizer.init(params), batch, key
        )
    exact_grad = jax.jit(
        jax.value_and_grad(losses["exact"]), compiler_options=compiler_options
    )
    return calls, exact_grad


def _torch_jacobian_sq(torch, x, logits, num_projections):
    """Double-backprop penalty mean_b ||J_b||_F^2 (num_projections=-1: exact)."""
    batch, classes = logits.shape
    exact = num_projections == -1
    count = classes if exact else num_projections
    total = 0.0
    for i in range(count):
        if exact:
            v = torch.zeros(batch, classes)
            v[:, i] = 1.0
        else:
            v = torch.randn(batch, classes)
            v = v / v.norm(dim=1, keepdim=True)
        (jv,) = torch.autograd.grad(logits, x, v, create_graph=True)
        scale = 1.0 if exact else classes / count
        total = total + scale * jv.pow(2).sum() / batch
    return total


def _torch_loss(torch, model, x, y, mode):
    x = x.clone().requires_grad_(mode != "plain")
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    if mode != "plain":
        projections = -1 if mode == "exact" else 1
        loss = loss + STRENGTH * _torch_jacobian_sq(torch, x, logits, projections)
    return loss


def torch_steps(torch, model):
    """One Adam step of ``model`` per mode (plain, projection, exact): ``{mode:
    step(x, y)}``, the loss of each as :func:`_torch_loss` builds it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def make(mode):
        def step(x, y):
            optimizer.zero_grad()
            _torch_loss(torch, model, x, y, mode).backward()
            optimizer.step()

        return step

    return {mode: make(mode) for mode in MODES}


def _agreement(torch, params, batch, exact_grad) -> float:
    """Worst relative L2 difference of the exact-penalty loss and gradients."""
    model = torch_mlp(params)
    x, y = (torch.from_numpy(a) for a in batch)
    loss = _torch_loss(torch, model, x, y.long(), "exact")
    loss.backward()
    # GPUs multiply float32 matrices in TF32 by default (about 1e-3 relative).
    with jax.default_matmul_precision("highest"):
        value, grads = exact_grad(params, batch, jax.random.key(0))
    errors = [abs(float(value) - loss.item()) / abs(loss.item())]
    for layer, linear in zip(dense_layers(grads), linear_layers(model), strict=True):
        pairs = (
            (layer["kernel"].T, linear.weight.grad),
            (layer["bias"], linear.bias.grad),
        )
        for ours, theirs in pairs:
            theirs = theirs.numpy()
            errors.append(
                float(
                    np.linalg.norm(np.asarray(ours) - theirs) / np.linalg.norm(theirs)
                )
            )
    return max(errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--xla-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an XLA compile option for chainlab's jitted steps (repeatable)",
    )
    args = parser.parse_args()
    if any("=" not in option for option in args.xla_option):
        parser.error("--xla-option takes NAME=VALUE")
    # The steps compile as the experiment's do, unless options are given.
    options = (
        dict(option.split("=", 1) for option in args.xla_option)
        if args.xla_option
        else eigen_matmul_options()
    )

    batch = _batch()
    params = MLP((*HIDDEN, NUM_CLASSES)).init(jax.random.key(0), batch[0][:1])
    jax_batch = tuple(jnp.asarray(a) for a in batch)
    jax_calls, exact_grad = _jax_calls(params, jax_batch, options)
    if options:  # for reference: the packed steps as a plain jax.jit compiles them
        defaults = _jax_calls(params, jax_batch, {})[0]
        for mode in ("projection", "exact"):
            jax_calls[f"{mode}, XLA defaults"] = defaults[mode]

    try:
        import torch
    except ImportError:
        torch = None
        print(
            "PyTorch is not installed in this interpreter: skipping the PyTorch side "
            "(install it into .venv-bench as this file's docstring says)."
        )

    status = 0
    if torch is not None:
        torch.manual_seed(0)
        error = _agreement(torch, params, batch, exact_grad)
        verdict = "pass" if error <= AGREEMENT else "FAIL"
        print(
            f"exact-penalty loss and gradients, chainlab vs PyTorch: {error:.2e} "
            f"(target <= {AGREEMENT:g}) {verdict}"
        )
        status = int(error > AGREEMENT)
        torch_model = torch_mlp(params)
        torch_calls = torch_steps(torch, torch_model)
        tx, ty = torch.from_numpy(batch[0]), torch.from_numpy(batch[1]).long()
        default_threads = torch.get_num_threads()

    print(
        f"MLP 64-{HIDDEN[0]}-{HIDDEN[1]}-10 tanh, batch {BATCH}, one Adam step; "
        f"median of {args.repeats} calls (ms), cpu = process CPU ms per call; "
        f"XLA compile options for chainlab: {options or 'none (defaults)'}"
    )
    thread_counts = [None]
    if torch is not None:
        thread_counts = sorted({default_threads, 1})
    ratios = {"chainlab projection / plain": []}  # label -> one ratio per round
    for round_ in range(1, args.rounds + 1):
        for threads in thread_counts:
            calls = {("chainlab", m): call for m, call in jax_calls.items()}
            if threads is not None:
                torch.set_num_threads(threads)
                for mode in MODES:
                    calls["PyTorch", mode] = lambda m=mode: torch_calls[m](tx, ty)
            timed = interleaved_median_ms(calls, args.repeats)
            label = f"PyTorch with {threads} thread(s)" if threads else "chainlab only"
            print(f"\nround {round_}, {label}")
            for mode in MODES:
                wall, cpu = timed["chainlab", mode]
                line = f"  {mode:<11} chainlab {wall:7.3f} (cpu {cpu:6.3f})"
                if threads is not None:
                    twall, tcpu = timed["PyTorch", mode]
                    line += f"   PyTorch {twall:7.3f} (cpu {tcpu:6.3f})"
                    line += f"   ratio {wall / twall:.3f}"
                print(line)
            for reference in REFERENCES:
                if reference not in jax_calls:
                    continue
                wall = timed["chainlab", reference].wall_ms
                line = f"  for reference, {reference}: chainlab {wall:7.3f}"
                if threads is not None:
                    mode = reference.split(",")[0]
                    ratio = wall / timed["PyTorch", mode].wall_ms
                    label = f"{reference} vs PyTorch {threads} thr"
                    ratios.setdefault(label, []).append(ratio)
                    line += f", ratio to PyTorch {mode} {ratio:.3f}"
                print(line)
            ratio = (
                timed["chainlab", "projection"].wall_ms
                / timed["chainlab", "plain"].wall_ms
            )
            ratios["chainlab projection / plain"].append(ratio)
            print(
                f"  chainlab projection / chainlab plain = {ratio:.2f} "
                f"(target <= {PROJECTION_VS_PLAIN:g})"
            )
            if threads is None:
                continue
            for mode, target in (
                ("projection", PROJECTION_VS_TORCH),
                ("exact", EXACT_VS_TORCH),
            ):
                ratio = timed["chainlab", mode].wall_ms / timed["PyTorch", mode].wall_ms
                label = f"{mode} vs PyTorch {threads} thr"
                ratios.setdefault(label, []).append(ratio)
                print(
                    f"  chainlab {mode} / PyTorch {mode} = {ratio:.3f} "
                    f"(target <= {target:g})"
                )
        if torch is not None:
            torch.set_num_threads(default_threads)

    print("\nsummary, one ratio per round (pass only if every round meets the target):")
    for label, values in ratios.items():
        target = (
            PROJECTION_VS_PLAIN
            if label.endswith("plain")
            else PROJECTION_VS_TORCH
            if label.startswith("projection")
            else EXACT_VS_TORCH
        )
        verdict = "pass" if max(values) <= target else "FAIL"
        if label.startswith(REFERENCES):
            verdict = "info"
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(
            f"  {label:<36} {shown}  median {np.median(values):.3f} "
            f"(target <= {target:g}) {verdict}"
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())

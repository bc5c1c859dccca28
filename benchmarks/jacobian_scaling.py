"""Jacobian penalties against the number of outputs: step time and cost per probe.

Protocol: the tanh MLP D-128-128-C (``chainlab.models.MLP``), a batch of 64 inputs
x ~ N(0, I) with labels b mod C, cross-entropy plus 0.01 * mean_batch ||J||_F^2 (J:
logits with respect to inputs), one Adam step
(``chainlab.training.make_packed_step``: the parameters in one vector, each call
from where the last left off), compiled with
``chainlab.compilation.eigen_matmul_options()`` as the ``jacobian_regularization``
experiment's steps are. For every D in ``--inputs`` and C
in ``--outputs`` it times, interleaved in blocks of ``--block`` calls (all C of one
D take turns in the same rounds, so a drift of the machine's speed does not pass for a
difference between C):

- plain: cross-entropy only;
- exact, reverse mode: C VJPs (``ad_mode="reverse"``);
- exact, forward mode: D JVPs (``ad_mode="forward"``);
- projection: Hoffman et al.'s estimator with one probe (the training setting) and
  with ``--probes`` probes;
- PyTorch's exact step (double backprop, one pass per output, as in
  ``jacobian_vs_pytorch.py``) when torch is installed and C <= ``--torch-max-outputs``,
  on one thread: on a loaded 2-core machine its two OpenMP threads wait for each
  other and run up to 100x slower, and one thread is the faster setting there even
  when the machine is quiet (see ``jacobian_vs_pytorch.py``).

Cost per probe = (penalty step - plain step) / number of probes (C VJPs, D JVPs or
``--probes`` projections), in microseconds. The work of one probe is not the same at
every C: a probe's pass meets the output layer (H x C multiply-adds per example) in
forward mode and in projections, so their cost per probe grows with C by design;
reverse mode meets it once per probe for the whole batch (the basis vector is shared).
The table gives each mode's multiply-adds per probe and example (weights'
products only, derivative of the penalty included: three passes) beside the time, and
the last column normalises the cost per probe by them (ns per thousand multiply-adds
per example), the measure that stays flat when the per-probe work is done at the same
efficiency at every C.

``ad_mode="auto"`` picks one of the two exact modes by
``chainlab.regularizers.exact_mode``; the script reports the mode picked and its time
over the faster mode's, per round (the goal: never more than 1.10). The exact loss must
be the same in both modes (1e-5, relative): the exit status is 1 when it is not.

Run (torch in its own venv, as ``jacobian_vs_pytorch.py`` says)::

    .venv-bench/bin/python benchmarks/jacobian_scaling.py [--inputs 64 256]
        [--outputs 10 32 64 100 200 1000] [--rounds 3] [--repeats 6] [--json FILE]
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jacobian_vs_pytorch import LEARNING_RATE, STRENGTH, torch_steps
from torch_models import torch_mlp

from chainlab.compilation import eigen_matmul_options
from chainlab.losses import cross_entropy
from chainlab.models import MLP
from chainlab.regularizers import exact_mode, jacobian_penalty
from chainlab.training import (
    classification_loss,
    interleaved_median_ms,
    make_packed_step,
    stepping,
)

BATCH = 64
HIDDEN = 128
MODE_SLOWDOWN = 1.10  # ad_mode="auto" against the faster exact mode, every round
AGREEMENT = 1e-5  # the exact loss in both modes, relative, float32


def probe_work(mode: str, inputs: int, outputs: int) -> int:
    """Multiply-adds per probe and example with the weights of the MLP, over the three
    passes of the penalty's derivative (the probe's pass, its transpose for the
    weights and for the activations)."""
    hidden = HIDDEN * HIDDEN
    if mode == "reverse":  # the output layer runs once per probe, not per example
        return 3 * (hidden + HIDDEN * inputs)
    if mode == "forward":  # the input layer runs once per probe
        return 3 * (hidden + HIDDEN * outputs)
    return 3 * (HIDDEN * outputs + hidden + HIDDEN * inputs)


def _steps(inputs: int, outputs: int, probes: int, options: dict):
    model = MLP((HIDDEN, HIDDEN, outputs))
    x = jax.random.normal(jax.random.key(0), (BATCH, inputs))
    y = jnp.arange(BATCH) % outputs
    params = model.init(jax.random.key(1), x[:1])
    optimizer = optax.adam(LEARNING_RATE)

    def penalised(**penalty_options):
        def loss_fn(params, batch, key):
            logits, penalty = jacobian_penalty(
                model.apply,
                params,
                batch[0],
                key=key,
                return_outputs=True,
                **penalty_options,
            )
            return jnp.mean(cross_entropy(logits, batch[1])) + STRENGTH * penalty

        return loss_fn

    losses = {
        "plain": classification_loss(model.apply),
        "reverse": penalised(method="exact", ad_mode="reverse"),
        "forward": penalised(method="exact", ad_mode="forward"),
        "projection": penalised(method="projection"),
        f"projection x{probes}": penalised(method="projection", num_projections=probes),
    }
    key = jax.random.key(2)
    calls = {}
    for name, loss_fn in losses.items():
        packed = make_packed_step(loss_fn, optimizer, params, compiler_options=options)
        calls[name] = stepping(
            packed.step, packed.params, packed.opt_state, (x, y), key
        )
    mode = exact_mode(model.apply, params, x)
    return calls, params, (np.array(x), np.array(y)), mode


def _torch_exact(torch, params, batch):
    torch.set_num_threads(1)
    steps = torch_steps(torch, torch_mlp(params))
    tx, ty = torch.from_numpy(batch[0]), torch.from_numpy(batch[1]).long()
    return lambda: steps["exact"](tx, ty)


def _measure(args, torch, inputs, options) -> list[dict]:
    """Every C of ``args.outputs`` for one D: all their steps take turns in the same
    rounds, so the machine's drift is shared by every C and the spread over C is C's."""
    calls, built = {}, {}
    for outputs in args.outputs:
        steps, params, batch, chosen = _steps(inputs, outputs, args.probes, options)
        losses = {name: float(call()["loss"]) for name, call in steps.items()}
        if torch is not None and outputs <= args.torch_max_outputs:
            steps["PyTorch exact"] = _torch_exact(torch, params, batch)
        calls |= {(outputs, name): call for name, call in steps.items()}
        built[outputs] = (list(steps), losses, chosen)
    rounds = [
        interleaved_median_ms(calls, args.repeats, args.block)
        for _ in range(args.rounds)
    ]
    return [
        _summary(args, inputs, outputs, names, losses, chosen, rounds)
        for outputs, (names, losses, chosen) in built.items()
    ]


def _summary(args, inputs, outputs, names, losses, chosen, rounds) -> dict:
    agreement = abs(losses["reverse"] - losses["forward"]) / abs(losses["forward"])
    ms = {name: [r[outputs, name].wall_ms for r in rounds] for name in names}
    other = "forward" if chosen == "reverse" else "reverse"
    ratios = [c / min(c, o) for c, o in zip(ms[chosen], ms[other], strict=True)]
    count = {"reverse": outputs, "forward": inputs, f"projection x{args.probes}": 0}
    count[f"projection x{args.probes}"] = args.probes
    per_probe = {}
    for name, probes in count.items():
        extra = np.median(ms[name]) - np.median(ms["plain"])
        work = probe_work(name.split()[0], inputs, outputs)
        per_probe[name] = {
            "us": 1e3 * extra / probes,
            "kmac": work / 1e3,
            "ns_per_kmac": 1e6 * extra / probes / (work / 1e3),
        }
    return {
        "inputs": inputs,
        "outputs": outputs,
        "modes_agree": agreement,
        "ms_rounds": ms,
        "ms": {name: float(np.median(t)) for name, t in ms.items()},
        "auto_mode": chosen,
        "auto_over_best_rounds": ratios,
        "per_probe": per_probe,
    }


def _print_tables(results, probes) -> None:
    print(
        "\n| D | C | plain | exact, reverse | exact, forward | auto: mode, "
        "time / best (per round) | projection | projection x"
        f"{probes} | PyTorch exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ms = r["ms"]
        ratios = " / ".join(f"{v:.2f}" for v in r["auto_over_best_rounds"])
        torch_ms = f"{ms['PyTorch exact']:.1f}" if "PyTorch exact" in ms else "-"
        print(
            f"| {r['inputs']} | {r['outputs']} | {ms['plain']:.2f} | "
            f"{ms['reverse']:.2f} | {ms['forward']:.2f} | {r['auto_mode']}, "
            f"{ratios} | {ms['projection']:.2f} | {ms[f'projection x{probes}']:.2f} "
            f"| {torch_ms} |"
        )
    print(
        "\nCost per probe, (step - plain) / probes: us, [thousand multiply-adds per "
        "probe and example], ns per thousand"
    )
    names = ("reverse", "forward", f"projection x{probes}")
    print("| D | C | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in results:
        cells = [
            f"{p['us']:.1f} [{p['kmac']:.0f}] {p['ns_per_kmac']:.2f}"
            for p in (r["per_probe"][name] for name in names)
        ]
        print(f"| {r['inputs']} | {r['outputs']} | " + " | ".join(cells) + " |")
    print("\nspread of the cost per probe over C (max / min), per D:")
    for inputs in sorted({r["inputs"] for r in results}):
        rows = [r for r in results if r["inputs"] == inputs]
        for name in names:
            us = [r["per_probe"][name]["us"] for r in rows]
            norm = [r["per_probe"][name]["ns_per_kmac"] for r in rows]
            print(
                f"  D={inputs} {name:<14} us per probe {max(us) / min(us):.2f}x, "
                f"per multiply-add {max(norm) / min(norm):.2f}x"
            )
    worst = max(max(r["auto_over_best_rounds"]) for r in results)
    verdict = "pass" if worst <= MODE_SLOWDOWN else "FAIL"
    print(
        f"\nad_mode='auto' against the faster exact mode, worst round: {worst:.3f} "
        f"(target <= {MODE_SLOWDOWN}) {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--outputs", type=int, nargs="+", default=[10, 32, 64, 100, 200, 1000]
    )
    parser.add_argument("--probes", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--block", type=int, default=2)
    parser.add_argument("--torch-max-outputs", type=int, default=1000)
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed in this interpreter: skipping its column.")
    options = eigen_matmul_options()
    print(
        f"MLP D-{HIDDEN}-{HIDDEN}-C tanh, batch {BATCH}, one Adam step; median ms "
        f"of {args.repeats} calls per round, {args.rounds} rounds; XLA options: "
        f"{options or 'none (defaults)'}"
    )
    results = []
    for inputs in args.inputs:
        for result in _measure(args, torch, inputs, options):
            ms = ", ".join(f"{k} {v:.2f}" for k, v in result["ms"].items())
            print(f"D={inputs} C={result['outputs']}: {ms}", flush=True)
            results.append(result)
    _print_tables(results, args.probes)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    worst = max(r["modes_agree"] for r in results)
    verdict = "pass" if worst <= AGREEMENT else "FAIL"
    print(
        f"exact loss, reverse mode against forward mode, worst relative difference: "
        f"{worst:.1e} (target <= {AGREEMENT:g}) {verdict}"
    )
    return int(worst > AGREEMENT)


if __name__ == "__main__":
    raise SystemExit(main())

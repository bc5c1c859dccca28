"""Integrated gradients: chainlab (JAX) against Captum (PyTorch) on the same MLP.

Protocol: a digits classifier as in the ``integrated_gradients`` experiment (tanh MLP
64-128-128-10, Adam 1e-3, batch 128, trained with ``chainlab.training.fit``, its
weights copied into a ``torch.nn.Sequential`` by ``benchmarks/torch_models.py``), the
first 200 test images (chainlab.data, digits protocol: x / 16), the predicted class, a
zero baseline, 50 Gauss-Legendre steps. Targets: attributions agree to 1e-4 (relative
L2 per image, worst image) and chainlab is at least 10x faster per image. Captum runs
all 200 x 50 path points in one batch (its default ``internal_batch_size=None``);
chainlab runs ``batch_integrated_gradients`` over the 200 images, its path points in
automatic chunks (``POINTS_PER_PASS / images`` points per image at a time); the plain
``jax.jit(jax.vmap(integrated_gradients))``, all points at once, is timed beside it.
Both use float32. JAX uses XLA's thread pool; Captum is timed with torch's default
thread count and with one thread (faster on a loaded machine), and the faster counts.

Timing: the median of ``--repeats`` calls, compilation and warm-up excluded, measured
in ``--rounds`` interleaved rounds (JAX, then Torch, then JAX, ...): on a shared
machine the rounds tell how much the load moved the numbers. Report every round. Wall
time decides the verdict; process CPU time (all threads) is printed next to it, as it
moves less with the load.

Install (Captum and PyTorch live in their own venv, never in chainlab's)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install torch    # a CPU build is enough
    .venv-bench/bin/pip install captum -e '.[bench]'

Run::

    .venv-bench/bin/python benchmarks/ig_vs_captum.py [--repeats 20] [--rounds 2]

Without torch or captum the Captum side is skipped with a message and only chainlab
is timed. Exit status 1 when the attributions disagree.
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from torch_models import torch_mlp

from chainlab.attribution import (
    batch_integrated_gradients,
    completeness_delta,
    integrated_gradients,
)
from chainlab.data import digits_for_classifier
from chainlab.models import MLP
from chainlab.robustness import accuracy
from chainlab.training import classification_loss, fit

AGREEMENT = 1e-4  # relative, worst image
SPEEDUP = 10.0  # chainlab at least 10x faster per image
CAPTUM_REFERENCE_MS = 0.6  # Captum per image on the recorded machine (README.md)
HIDDEN = (128, 128)
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


def train_classifier(steps: int, split) -> tuple[MLP, dict, float]:
    """The digits MLP trained by ``fit``; returns it, its params and test accuracy."""
    model = MLP((*HIDDEN, 10))
    params = model.init(jax.random.key(0), split.x_train[:1])
    params = fit(
        classification_loss(model.apply),
        params,
        optax.adam(LEARNING_RATE),
        (split.x_train, split.y_train),
        steps=steps,
        batch_size=BATCH_SIZE,
    ).params
    return (
        model,
        params,
        float(accuracy(model.apply, params, split.x_test, split.y_test)),
    )


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) of ``fn()``, in ms.

    ``fn`` must block until its result is ready. CPU time counts the work, not the
    wait for a core, so it moves less than wall time when the machine is loaded.
    """
    fn()  # warm-up (and compilation)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return float(np.median(wall) * 1e3), float(np.median(cpu) * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    split = digits_for_classifier()
    model, params, test_accuracy = train_classifier(args.train_steps, split)
    xs = jnp.asarray(split.x_test[: args.images])
    ys = jnp.argmax(model.apply(params, xs), axis=-1)
    print(
        f"MLP 64-128-128-10 tanh, {args.train_steps} training steps, "
        f"test accuracy {test_accuracy:.4f}; {args.images} images, {args.steps} "
        "Gauss-Legendre steps, zero baseline, predicted class"
    )

    @jax.jit
    def vmapped_ig(params, xs, ys):
        def one(x, y):
            return integrated_gradients(
                lambda z: model.apply(params, z)[y], x, steps=args.steps
            )

        return jax.vmap(one)(xs, ys)

    def run_vmapped():
        return jax.block_until_ready(vmapped_ig(params, xs, ys))

    def run_chainlab():
        batch = batch_integrated_gradients(
            model.apply, params, xs, ys, steps=args.steps
        )
        return jax.block_until_ready(batch.attributions)

    vmapped_ms, _ = _median_ms(run_vmapped, args.repeats)
    print(
        f"jax.vmap(integrated_gradients), all points at once: "
        f"{vmapped_ms / args.images:.4f} ms per image"
    )

    ours = np.asarray(run_chainlab())
    delta = jax.vmap(
        lambda x, y, a: completeness_delta(
            lambda z: model.apply(params, z)[y], x, a, relative=True
        )
    )(xs, ys, jnp.asarray(ours))
    print(
        f"chainlab completeness: median relative error {float(jnp.median(delta)):.2e}"
    )

    try:
        import torch
        from captum.attr import IntegratedGradients
    except ImportError as error:
        print(
            f"SKIPPED the Captum side: {error}. Install torch and captum into "
            ".venv-bench as this file's docstring says."
        )
        ms, _ = _median_ms(run_chainlab, args.repeats)
        print(f"chainlab: {ms / args.images:.4f} ms per image ({ms:.1f} ms per batch)")
        return 0

    net = torch_mlp(params).eval()
    inputs = torch.tensor(np.asarray(xs, np.float32))
    targets = torch.tensor(np.asarray(ys, np.int64))
    explainer = IntegratedGradients(net)

    def captum_ig():
        return explainer.attribute(
            inputs,
            baselines=torch.zeros_like(inputs),
            target=targets,
            n_steps=args.steps,
            method="gausslegendre",
        )

    theirs = captum_ig().detach().numpy()
    per_image = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    worst = float(per_image.max())
    agree = worst <= AGREEMENT
    print(
        f"agreement: relative L2 difference per image, worst {worst:.2e}, median "
        f"{float(np.median(per_image)):.2e} (target <= {AGREEMENT:g}): "
        + ("PASS" if agree else "FAIL")
    )

    default_threads = torch.get_num_threads()
    print(
        f"timing: medians of {args.repeats} calls, ms per image, wall / CPU (all "
        "threads); the machine may be shared with other jobs, so compare rounds"
    )
    ratios, cpu_ratios = [], []
    for round_ in range(1, args.rounds + 1):
        jax_ms = _median_ms(run_chainlab, args.repeats)
        captum_ms = {}
        for threads in dict.fromkeys((default_threads, 1)):
            torch.set_num_threads(threads)
            captum_ms[threads] = _median_ms(captum_ig, args.repeats)
        torch.set_num_threads(default_threads)
        fastest = min(captum_ms.values())
        ratios.append(fastest[0] / jax_ms[0])
        cpu_ratios.append(fastest[1] / jax_ms[1])

        def per_image(ms):
            return f"{ms[0] / args.images:.4f} / {ms[1] / args.images:.4f}"

        captum_text = ", ".join(
            f"{per_image(ms)} ({t} thread{'s' * (t > 1)})"
            for t, ms in captum_ms.items()
        )
        print(
            f"  round {round_}: chainlab {per_image(jax_ms)}; Captum {captum_text}; "
            f"speed-up over the faster Captum {ratios[-1]:.1f}x wall, "
            f"{cpu_ratios[-1]:.1f}x CPU"
        )
    verdict = "PASS" if min(ratios) >= SPEEDUP else "FAIL"
    print(
        f"speed-up (wall): {', '.join(f'{r:.1f}x' for r in ratios)} (target >= "
        f"{SPEEDUP:g}x in every round; Captum's reference ~{CAPTUM_REFERENCE_MS} "
        f"ms/image): {verdict}; CPU-time ratio "
        f"{', '.join(f'{r:.1f}x' for r in cpu_ratios)}"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

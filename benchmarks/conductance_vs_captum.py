"""Layer conductance and layer integrated gradients: chainlab (JAX) against Captum.

Protocol: the digits classifier of ``benchmarks/ig_vs_captum.py`` (tanh MLP
64-128-128-10, trained by ``chainlab.training.fit``, its weights copied into a
``torch.nn.Sequential``), split at its first hidden layer: ``body(x) = tanh(x W1 +
b1)`` (Captum's ``layer=net[1]``, the Tanh module) and ``head`` the rest of the
network, the predicted class, a zero baseline.

Agreement (the same numbers, up to each method's discretisation):

- Layer integrated gradients: the same nodes and weights on both sides (50
  Gauss-Legendre steps, float32, the first ``--images`` test images); target: relative
  L2 difference per image at most 1e-4 (worst image).
- Layer conductance: chainlab integrates ``dF/dy_j * dy_j/dalpha`` with the rule's
  weights (``dy/dalpha`` by forward mode); Captum sums ``dF/dy_j`` times the change
  of ``y_j`` between consecutive nodes (a left Riemann-Stieltjes sum, first order in
  the node spacing). Both converge to the same integral, so the comparison is in
  float64 (``net.double()``, ``jax_enable_x64``) on ``--agreement-images`` images:
  chainlab with 50 Gauss-Legendre nodes against Captum's ``riemann_trapezoid`` sums
  with ``n`` and ``2n`` steps (nodes ``k / n``), Richardson-extrapolated
  (``2 C_2n - C_n``, second order); target 1e-4, worst image. Captum's own 50-step
  Gauss-Legendre figure is printed beside it.
- Completeness: chainlab's conductances sum to ``F(x) - F(x')`` (median relative
  error printed).

Speed: ``--images`` images, 50 Gauss-Legendre steps, float32, chainlab's
``jax.jit(jax.vmap(...))`` of the per-example functions against Captum's batched
``attribute`` (all path points in one batch); medians of ``--repeats`` calls in
``--rounds`` interleaved rounds, Captum at torch's default thread count and at one
thread, the faster counting; target at least 10x per image in every round.

Run (torch and captum in ``.venv-bench``, see ``benchmarks/README.md``)::

    .venv-bench/bin/python benchmarks/conductance_vs_captum.py [--repeats 20]

Without torch or captum only chainlab is timed. Exit status 1 when an agreement
target is missed.
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
from ig_vs_captum import _median_ms, train_classifier
from torch_models import torch_mlp

from chainlab.attribution import layer_conductance, layer_integrated_gradients
from chainlab.data import digits_for_classifier
from chainlab.models import dense_layers

AGREEMENT = 1e-4  # relative L2 per image, worst image
SPEEDUP = 10.0  # chainlab at least 10x faster per image
CAPTUM_STEPS = (1000, 2000)  # Captum's riemann_trapezoid sums, Richardson-combined


def split_mlp(params, dtype=jnp.float32):
    """``(body, head_for(label))`` of the MLP, split after its first hidden layer."""
    layers = [
        {name: jnp.asarray(value, dtype) for name, value in layer.items()}
        for layer in dense_layers(params)
    ]

    def body(x):
        return jnp.tanh(x @ layers[0]["kernel"] + layers[0]["bias"])

    def logits(y):
        for layer in layers[1:-1]:
            y = jnp.tanh(y @ layer["kernel"] + layer["bias"])
        return y @ layers[-1]["kernel"] + layers[-1]["bias"]

    return body, lambda label: lambda y: logits(y)[label]


def chainlab_attributions(params, steps, dtype=jnp.float32):
    """``jit(vmap)`` of conductance and layer IG over images and labels."""
    body, head_for = split_mlp(params, dtype)

    def batch(fn):
        def one(x, label):
            return fn(body, head_for(label), x, steps=steps)

        return jax.jit(jax.vmap(one))

    return batch(layer_conductance), batch(layer_integrated_gradients), body, head_for


def _rel(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)


def _report_agreement(name: str, per_image: np.ndarray) -> bool:
    worst = float(per_image.max())
    ok = worst <= AGREEMENT
    print(
        f"{name}: relative L2 difference per image, worst {worst:.2e}, median "
        f"{float(np.median(per_image)):.2e} (target <= {AGREEMENT:g}): "
        + ("PASS" if ok else "FAIL")
    )
    return ok


def agreement_float64(params, xs, ys, steps, torch, LayerConductance) -> bool:
    """Conductance in float64 against Captum's Richardson-combined sums."""
    with jax.enable_x64(True):
        conductance, _, body, head_for = chainlab_attributions(
            params, steps, jnp.float64
        )
        x64 = jnp.asarray(xs, jnp.float64)
        ours = np.asarray(conductance(x64, jnp.asarray(ys)))
        forward = jax.vmap(lambda x, y: head_for(y)(body(x)))
        change = forward(x64, jnp.asarray(ys)) - forward(jnp.zeros_like(x64), ys)
        completeness = np.abs(ours.sum(1) - np.asarray(change)) / np.abs(change)
    print(
        f"chainlab conductance completeness (float64): median relative error "
        f"{float(np.median(completeness)):.1e}, worst {float(completeness.max()):.1e}"
    )
    net = torch_mlp(params).double().eval()
    explainer = LayerConductance(net, net[1])
    inputs = torch.tensor(np.asarray(xs, np.float64))
    targets = torch.tensor(np.asarray(ys, np.int64))

    def captum(n, method):
        return (
            explainer.attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=targets,
                n_steps=n,
                method=method,
            )
            .detach()
            .numpy()
        )

    coarse, fine = (captum(n, "riemann_trapezoid") for n in CAPTUM_STEPS)
    default = captum(steps, "gausslegendre")
    print(
        f"  Captum riemann_trapezoid n = {CAPTUM_STEPS[0]}: worst "
        f"{_rel(ours, coarse).max():.2e}; n = {CAPTUM_STEPS[1]}: worst "
        f"{_rel(ours, fine).max():.2e}; Captum's default ({steps} Gauss-Legendre "
        f"nodes): worst {_rel(ours, default).max():.2e}"
    )
    return _report_agreement(
        "conductance vs Captum (Richardson 2 C_2n - C_n, float64)",
        _rel(ours, 2.0 * fine - coarse),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--agreement-images", type=int, default=20)
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
        f"MLP 64-128-128-10 tanh, {args.train_steps} training steps, test accuracy "
        f"{test_accuracy:.4f}; layer: the first hidden layer (128 units); "
        f"{args.images} images, {args.steps} Gauss-Legendre steps, zero baseline, "
        "predicted class"
    )
    conductance, lig, _, _ = chainlab_attributions(params, args.steps)

    def run_conductance():
        return jax.block_until_ready(conductance(xs, ys))

    def run_lig():
        return jax.block_until_ready(lig(xs, ys))

    try:
        import torch
        from captum.attr import LayerConductance, LayerIntegratedGradients
    except ImportError as error:
        print(
            f"SKIPPED the Captum side: {error}. Install torch and captum into "
            ".venv-bench as benchmarks/README.md says."
        )
        for name, fn in (("conductance", run_conductance), ("layer IG", run_lig)):
            ms, _ = _median_ms(fn, args.repeats)
            print(f"chainlab {name}: {ms / args.images:.4f} ms per image")
        return 0

    n = args.agreement_images
    agree = agreement_float64(
        params, xs[:n], ys[:n], args.steps, torch, LayerConductance
    )
    net = torch_mlp(params).eval()
    inputs = torch.tensor(np.asarray(xs, np.float32))
    targets = torch.tensor(np.asarray(ys, np.int64))
    explainers = {
        "conductance": LayerConductance(net, net[1]),
        "layer IG": LayerIntegratedGradients(net, net[1]),
    }

    def captum_for(name):
        def attribute():
            return explainers[name].attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=targets,
                n_steps=args.steps,
                method="gausslegendre",
            )

        return attribute

    theirs = captum_for("layer IG")().detach().numpy()
    agree &= _report_agreement(
        "layer IG vs Captum (float32)", _rel(np.asarray(run_lig()), theirs)
    )

    default_threads = torch.get_num_threads()
    print(
        f"timing: medians of {args.repeats} calls, ms per image, wall / CPU (all "
        "threads); the machine may be shared with other jobs, so compare rounds"
    )
    ratios = {name: [] for name in explainers}
    ours = {"conductance": run_conductance, "layer IG": run_lig}
    for round_ in range(1, args.rounds + 1):
        for name in explainers:
            jax_ms = _median_ms(ours[name], args.repeats)
            captum_ms = {}
            for threads in dict.fromkeys((default_threads, 1)):
                torch.set_num_threads(threads)
                captum_ms[threads] = _median_ms(captum_for(name), args.repeats)
            torch.set_num_threads(default_threads)
            fastest = min(captum_ms.values())
            ratios[name].append(fastest[0] / jax_ms[0])

            def per_image(ms):
                return f"{ms[0] / args.images:.4f} / {ms[1] / args.images:.4f}"

            captum_text = ", ".join(
                f"{per_image(ms)} ({t} thread{'s' * (t > 1)})"
                for t, ms in captum_ms.items()
            )
            print(
                f"  round {round_}, {name}: chainlab {per_image(jax_ms)}; Captum "
                f"{captum_text}; speed-up {ratios[name][-1]:.1f}x wall"
            )
    for name, values in ratios.items():
        verdict = "PASS" if min(values) >= SPEEDUP else "FAIL"
        print(
            f"{name} speed-up (wall): {', '.join(f'{r:.1f}x' for r in values)} "
            f"(target >= {SPEEDUP:g}x in every round): {verdict}"
        )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

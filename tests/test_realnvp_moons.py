"""realnvp_moons: the quick variant end to end (run once) and its config checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from chainlab import runner
from chainlab.flows import gradient_pathways, realnvp, standardize
from chainlab.runner.registry import experiment_module

FIGURES = ("samples", "density", "latent", "gradient_pathways", "training")
FLOWS = ("affine", "spline", "maf", "conditional")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``(results, workdir)`` of one quick run, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("realnvp_moons") / "run"
    return runner.run("realnvp_moons", variant="quick", workdir=workdir), workdir


@pytest.mark.slow
def test_quick_results_are_saved_and_beat_a_gaussian(quick_run):
    results, workdir = quick_run
    saved = json.loads((workdir / "results.json").read_text())
    assert saved == results
    # The best Gaussian scores ~2.0 nats; 100 steps of a tiny flow already do better,
    # and no model beats the generating density (0.32).
    for flow in FLOWS:
        assert 0.25 < saved["generating_density_nll"] < saved[f"test_nll_{flow}"] < 1.9
        assert saved[f"best_step_{flow}"] in (50, 100)
    # The headline is the unconditional flow with the lowest validation NLL.
    headline = saved["headline_flow"]
    assert saved["val_nll"] == min(saved[f"val_nll_{flow}"] for flow in FLOWS[:3])
    assert saved["test_nll"] == saved[f"test_nll_{headline}"]
    assert saved["best_step"] == saved[f"best_step_{headline}"]
    assert saved["train_step_ms"] > 0
    assert all(saved[f"train_step_ms_{flow}"] > 0 for flow in FLOWS[1:])
    # Knowing the moon saves at most log 2 nats: p(x) >= p(x | y) / 2.
    given = saved["test_nll_given_moon"]
    assert saved["test_nll_conditional"] - np.log(2) - 1e-4 <= given < 1.9


@pytest.mark.slow
def test_quick_report_has_every_figure_and_no_failure(quick_run):
    _, workdir = quick_run
    report = (workdir / "report.md").read_text()
    # 100 steps cannot reach the paper-scale goal: the quick report shows it as info.
    assert "FAIL" not in report
    assert "| NLL of the generating density (floor) |" in report
    assert "| layer | base | log-det | cosine |" in report
    for title in ("RealNVP (affine)", "spline coupling flow", "masked autoregressive"):
        assert f"| {title}" in report
    assert "| RealNVP conditioned on the moon |" in report
    for name in FIGURES:
        assert (workdir / f"{name}.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_metrics_log_both_fits_and_the_pathways_per_layer(quick_run):
    _, workdir = quick_run
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]
    evals = {
        run: [r for r in records if r["split"] == "eval" and r["run"] == run]
        for run in ("realnvp", "spline", "maf", "conditional")
    }
    for run in ("spline", "maf", "conditional"):
        assert [r["step"] for r in evals[run]] == [50, 100]
        assert all("val_nll" in r for r in evals[run])
    assert evals["realnvp"]
    for record in evals["realnvp"]:  # the affine RealNVP's
        for name in ("base", "logdet", "cosine"):
            assert {f"{name}_layer0", f"{name}_layer1"} <= record.keys()
        assert -1.0 <= record["cosine_layer1"] <= 1.0


def test_pathways_split_by_paths_equal_gradient_pathways(key, x64):
    # The experiment's flow in miniature: standardised inside, perturbed off identity.
    x = jax.random.normal(key, (16, 2), jnp.float64) * 2.0 + 1.0
    flow = realnvp(
        2, num_layers=2, hidden=(8,), preprocess=standardize(x.mean(0), x.std(0))
    )
    params = jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float64) + 0.1, flow.init(jax.random.key(1))
    )
    split = experiment_module("realnvp_moons").pathway_gradients(flow, params, x)
    reference = gradient_pathways(flow, params, x)  # (base, logdet), by hand
    jax.tree.map(  # same structure, same values
        lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-12),
        split,
        reference,
    )
    # Neither pathway is near zero, and they differ: a swap would be caught.
    base, logdet = (ravel_pytree(g)[0] for g in reference)
    assert min(jnp.linalg.norm(base), jnp.linalg.norm(logdet)) > 0.01
    assert jnp.linalg.norm(base - logdet) > 0.01

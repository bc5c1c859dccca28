"""realnvp_moons: quick variant end to end, the gradient pathways and the NLL floor."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed
from chainlab.flows import realnvp
from chainlab.runner.experiments.realnvp_moons import (
    generating_density_nll,
    gradient_pathways,
)


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("realnvp_moons", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    # The best Gaussian scores ~2.0 nats; 100 steps of a tiny flow already do better,
    # and no model beats the generating density (0.32).
    assert saved["generating_density_nll"] < saved["test_nll"] < 1.9
    assert saved["train_step_ms"] > 0
    # 100 steps cannot reach the paper-scale goal: the quick report shows it as info.
    assert "FAIL" not in (tmp_path / "run" / "report.md").read_text()
    for name in ("samples", "density", "latent", "gradient_pathways", "training"):
        assert (tmp_path / "run" / f"{name}.png").stat().st_size > 0
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if r["split"] == "eval"]
    assert evals and all("base_layer1" in r and "logdet_layer1" in r for r in evals)


def test_gradient_pathways_sum_to_the_log_likelihood_gradient(key, x64):
    flow = realnvp(2, num_layers=2, hidden=(8,))
    params = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(key, p.shape, p.dtype), flow.init(key)
    )
    x = jax.random.normal(jax.random.fold_in(key, 1), (16, 2))

    @jax.jit
    def pieces(params):
        base, logdet = gradient_pathways(flow, params, x)
        total = jax.grad(lambda p: jnp.mean(flow.log_prob(p, x)))(params)
        return base, logdet, total

    base, logdet, total = pieces(params)
    summed = jax.tree.map(jnp.add, base, logdet)
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(total), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # Both pathways carry gradient to every parameter array of every coupling.
    for leaf in (*jax.tree.leaves(base), *jax.tree.leaves(logdet)):
        assert float(jnp.abs(leaf).max()) > 0


def test_generating_density_nll_matches_monte_carlo_entropy():
    # On fresh draws the mean NLL under the true density estimates its entropy;
    # the train and test sets must agree to sampling error.
    from chainlab.data import two_moons

    data = two_moons()
    a = generating_density_nll(data.x_test[:1000], num_angles=1000)
    b = generating_density_nll(data.x_train[:1000], num_angles=1000)
    assert 0.1 < a < 0.45
    assert abs(a - b) < 0.1  # ~3 standard errors of a 1000-point mean


@pytest.mark.parametrize(
    ("key_", "value", "match"),
    [
        ("activation", "sigmoid", "activation must be one of"),
        ("schedule", "linear", "schedule must be one of"),
        ("steps", 5000, "at most 3000 steps"),
    ],
)
def test_bad_config_is_refused(tmp_path, key_, value, match):
    with pytest.raises(ExperimentFailed, match=match):
        runner.run(
            "realnvp_moons",
            variant="quick",
            overrides={key_: value},
            workdir=tmp_path / "run",
        )

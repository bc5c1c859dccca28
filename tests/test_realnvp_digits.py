"""realnvp_digits: quick variant end to end and the protocol's helpers."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from chainlab import runner
from chainlab.data import digits
from chainlab.runner.experiments.realnvp_digits import (
    dequantize_test,
    nearest_distances,
    split_validation,
    with_average,
)


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("realnvp_digits", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    assert saved["uniform_bits_per_dim"] == pytest.approx(math.log2(17))
    # 60 steps of a one-scale flow already beat the uniform density on [0, 17)^64.
    for key in ("test_bits_per_dim", "test_bits_per_dim_early_stopped"):
        assert 1.5 < saved[key] < saved["uniform_bits_per_dim"]
    assert saved["best_step"] in (30, 60)
    assert saved["sample_to_train_distance_ratio"] > 0
    for name in ("samples", "training"):
        assert (tmp_path / "run" / f"{name}.png").stat().st_size > 0
    # 60 steps cannot reach the paper-scale goal: the quick report shows it as info.
    assert "FAIL" not in (tmp_path / "run" / "report.md").read_text()


def test_test_draw_follows_the_protocol():
    x_test = digits().x_test
    y = dequantize_test(x_test.reshape(-1, 8, 8))
    expected = x_test + np.random.default_rng(1).uniform(size=x_test.shape)
    np.testing.assert_array_equal(y.reshape(-1, 64), expected.astype(np.float32))
    assert np.all((y >= x_test.reshape(-1, 8, 8)) & (y < x_test.reshape(-1, 8, 8) + 1))


def test_validation_split_is_by_images_and_disjoint():
    x = np.arange(20.0).reshape(10, 2)
    train, val = split_validation(x, 3, seed=0)
    assert train.shape == (7, 2) and val.shape == (3, 2)
    rows = {tuple(r) for r in train} | {tuple(r) for r in val}
    assert len(rows) == 10
    with pytest.raises(ValueError, match="val_size"):
        split_validation(x, 10, seed=0)


def test_nearest_distances_finds_exact_copies():
    refs = np.random.default_rng(0).integers(0, 17, size=(30, 8, 8, 1)).astype(float)
    queries = refs[[4, 17]]
    distances, index = nearest_distances(queries, refs)
    np.testing.assert_array_equal(index, [4, 17])
    np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_with_average_tracks_the_exponential_moving_average():
    decay = 0.9
    optimizer = with_average(optax.sgd(0.5), decay)
    params = {"live": jnp.array([1.0, -2.0]), "average": jnp.array([1.0, -2.0])}
    state = optimizer.init(params)
    expected = np.array([1.0, -2.0])
    for step in range(5):
        grads = {"live": jnp.array([1.0, 2.0]) * (step + 1), "average": jnp.zeros(2)}
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        expected = decay * expected + (1 - decay) * np.asarray(params["live"])
    np.testing.assert_allclose(params["live"], [1.0 - 7.5, -2.0 - 15.0], rtol=1e-6)
    np.testing.assert_allclose(params["average"], expected, rtol=1e-6)
    assert jax.tree.structure(updates) == jax.tree.structure(params)

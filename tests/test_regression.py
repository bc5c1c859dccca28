"""chainlab.regression: contaminated data, gradient M-estimates, reference solvers."""

import functools

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab import regression
from chainlab.losses import huber


@pytest.fixture(scope="module")
def data():
    return regression.contaminated_linear_data(
        num_samples=120, num_features=2, outlier_fraction=0.1, seed=3
    )


def test_contaminated_data_is_reproducible_and_shifts_only_the_outliers(data):
    again = regression.contaminated_linear_data(
        num_samples=120, num_features=2, outlier_fraction=0.1, seed=3
    )
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert data.outliers.size == 12 and data.theta[-1] == 1.0
    clean = regression.contaminated_linear_data(
        num_samples=120, num_features=2, outlier_fraction=0.1, outlier_scale=0.0, seed=3
    )
    shift = data.y - clean.y
    assert np.all(shift[data.outliers] >= 10.0) and np.all(shift[data.outliers] <= 30)
    assert np.count_nonzero(shift) == 12


def test_gradient_fits_match_the_reference_solvers(data):
    @chex.assert_max_traces(n=1)  # every Adam step reuses one compiled program
    def squared(r):
        return 0.5 * r**2

    losses = {
        "squared": squared,
        "huber": functools.partial(huber, delta=1.0),
        "absolute": jnp.abs,
    }
    fits = regression.fit_linear(
        losses, data.x, data.y, steps=600, learning_rate=0.05, log_every=600
    )
    references = {
        "squared": regression.reference_fit(data.x, data.y, loss="squared"),
        "huber": regression.reference_fit(data.x, data.y, loss="huber", delta=1.0),
        "absolute": regression.reference_fit(data.x, data.y, loss="absolute"),
    }
    for name, theta in fits.items():
        assert theta.shape == (3,) and theta.dtype == np.float64
        np.testing.assert_allclose(theta, references[name], atol=2e-3, err_msg=name)
    # The outliers pull the least-squares fit; the bounded-influence fits resist.
    error = {n: np.linalg.norm(t - data.theta) for n, t in references.items()}
    assert error["squared"] > 3 * max(error["huber"], error["absolute"])


def test_reference_fits_are_exact_on_noiseless_data():
    x = np.random.default_rng(0).normal(size=(30, 2))
    y = x @ np.array([1.5, -2.0]) + 0.5
    for loss, delta in (("squared", None), ("huber", 0.3), ("absolute", None)):
        theta = regression.reference_fit(x, y, loss=loss, delta=delta)
        np.testing.assert_allclose(theta, [1.5, -2.0, 0.5], atol=1e-6, err_msg=loss)

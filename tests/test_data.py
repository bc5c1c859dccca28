"""Synthetic tasks of chainlab.data: shapes, determinism and the generating maths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab.data import (
    channel_features,
    make_moons,
    random_pixel_shifts,
    retrieval_task,
)

# float32 round-off of a unit-norm row or of a 4 x 4 product: a few ulps.
FLOAT32_TOL = 1e-6
# float32 M^T M, entries up to s^2 = 4: ulps of 4 summed over 4 terms.
GRAM_TOL = 1e-5
SIZES = {"memory_size": 5, "dim": 4, "train_size": 64, "test_size": 16}


def test_retrieval_task_shapes_and_memory(key):
    task = retrieval_task(key, noise=0.3, **SIZES)
    assert task.keys.shape == (5, 4) and task.values.shape == (5, 5)
    assert task.train[0].shape == (64, 4) and task.test[1].shape == (16,)
    np.testing.assert_allclose(jnp.linalg.norm(task.keys, axis=-1), 1, FLOAT32_TOL)
    chex.assert_trees_all_equal(task.values, jnp.eye(5))
    for _, target in (task.train, task.test):
        assert int(target.min()) >= 0 and int(target.max()) < 5


def test_retrieval_task_mix_is_a_stretched_rotation(key):
    task = retrieval_task(key, noise=0.3, **SIZES)
    # M = R diag(s): M^T M = diag(s^2), with s from 0.5 to 2 geometrically.
    stretch = np.geomspace(0.5, 2.0, 4)
    np.testing.assert_allclose(
        task.mix.T @ task.mix, np.diag(stretch**2), atol=GRAM_TOL
    )


def test_retrieval_inputs_are_mixed_keys_plus_noise(key):
    clean = retrieval_task(key, noise=0.0, **SIZES)
    noisy = retrieval_task(key, noise=0.3, **SIZES)
    x, target = clean.train
    np.testing.assert_allclose(x, clean.keys[target] @ clean.mix.T, atol=FLOAT32_TOL)
    # One key, one task: the noise level changes the inputs, nothing else.
    chex.assert_trees_all_equal(noisy.train[1], target)
    chex.assert_trees_all_equal(noisy.keys, clean.keys)
    residual = np.asarray(noisy.train[0] - x)
    assert 0.2 < residual.std() < 0.4  # 256 draws of N(0, 0.3^2)
    other = retrieval_task(jax.random.key(1), noise=0.0, **SIZES)
    assert not np.allclose(other.keys, clean.keys)


def test_channel_features_have_their_own_mean_and_spread(key):
    x = channel_features(key, (4000, 2, 3))
    assert x.shape == (4000, 2, 3) and x.dtype == jnp.float32
    spread = np.asarray(x.reshape(-1, 3).std(axis=0))
    mean = np.asarray(x.reshape(-1, 3).mean(axis=0))
    # s_c in [0.5, 3], m_c ~ N(0, 1): far from standardized; 8000 draws per channel.
    assert np.all((spread > 0.45) & (spread < 3.1))
    assert np.abs(spread - 1).max() + np.abs(mean).max() > 0.1
    chex.assert_trees_all_equal(channel_features(key, (4000, 2, 3)), x)


def test_make_moons_draws_scikit_learns_points():
    from sklearn.datasets import make_moons as reference

    for num_points, seed in ((101, 0), (64, 1)):
        x, y = make_moons(num_points, noise=0.05, seed=seed)
        x_ref, y_ref = reference(num_points, noise=0.05, random_state=seed)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)


def _shifted(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``image`` moved by ``rows`` down and ``cols`` right, zeros filling in."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(rows, 0) : h + min(rows, 0), max(cols, 0) : w + min(cols, 0)] = image[
        max(-rows, 0) : h + min(-rows, 0), max(-cols, 0) : w + min(-cols, 0)
    ]
    return out


def test_random_pixel_shifts_move_each_axis_by_at_most_one_pixel():
    images = np.random.default_rng(0).uniform(1, 2, (2000, 4, 5, 1)).astype(np.float32)
    moved = np.asarray(random_pixel_shifts(jax.random.key(0), images, 0.5))
    offsets = [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1)]
    found = []
    for image, result in zip(images, moved, strict=True):
        matches = [o for o in offsets if np.array_equal(result, _shifted(image, *o))]
        assert len(matches) == 1
        found.append(matches[0])
    moved_axes = np.abs(np.array(found))
    # Each axis moves with probability 0.5 (std of the mean over 2000: 0.011).
    np.testing.assert_allclose(moved_axes.mean(axis=0), 0.5, atol=0.05)
    never = random_pixel_shifts(jax.random.key(1), images[:8], 0.0)
    np.testing.assert_array_equal(never, images[:8])
    with pytest.raises(ValueError, match="probability"):
        random_pixel_shifts(jax.random.key(1), images[:8], 1.5)
    with pytest.raises(ValueError, match="images must be"):
        random_pixel_shifts(jax.random.key(1), images[0, :, :, 0], 0.5)

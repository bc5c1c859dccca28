"""Offline datasets under chainlab's shared benchmark protocols.

Nothing here touches the network: digits ship with scikit-learn (imported on first
use, not with this module) and two moons is generated.

- Two moons: scikit-learn's ``make_moons(noise=0.05)``, train n=8000
  ``random_state=0``, test n=2000 ``random_state=1`` (drawn by :func:`make_moons`,
  the same points without scikit-learn).
- Digits: ``load_digits()`` (8x8 images, integer values 0..16), permuted by
  ``np.random.default_rng(0).permutation(1797)``; first 1437 train, last 360 test.
  Classifiers see ``x / 16`` (:func:`digits_for_classifier`); flows dequantize
  ``y = x + u``, ``u ~ U[0, 1)`` and report bits/dim ``NLL(y) / (64 ln 2)``, where a
  uniform model scores ``log2(17) = 4.087``.
- Two-moons NLL is reported in nats per point on the raw coordinates (a
  standardisation's log-determinant added back), after at most 3000 steps of batch 256.

Synthetic data is drawn with ``jax.random`` from a key, so a seed fixes it:
:func:`retrieval_task` (a memory of unit keys, read back from distorted, noisy copies)
and :func:`channel_features` (features with their own mean and spread per channel).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chainlab.validation import check_at_least, check_in_range, check_nonnegative

DIGITS_TRAIN_SIZE = 1437
DIGITS_LEVELS = 17  # pixel values 0..16
DIGITS_MAX = 16.0


class Split(NamedTuple):
    """Train and test arrays; ``y_*`` are integer labels (``None`` if unlabelled)."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None


def make_moons(
    num_points: int, *, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``make_moons(num_points, noise=noise, random_state=seed)``, point
    for point, without importing scikit-learn (a second of start-up per process).

    The outer moon is ``(cos t, sin t)`` and the inner ``(1 - cos t, 1/2 - sin t)``
    for t evenly spaced on [0, pi] (``num_points // 2`` outer points); the points are
    shuffled, then Gaussian noise of standard deviation ``noise`` is added, all from
    ``numpy.random.RandomState(seed)`` in that order.

    Example:
      >>> x, y = make_moons(4, noise=0.0, seed=0)
      >>> x.shape, sorted(y.tolist())
      ((4, 2), [0, 0, 1, 1])
    """
    outer = np.linspace(0, np.pi, num_points // 2)
    inner = np.linspace(0, np.pi, num_points - num_points // 2)
    x = np.stack(
        [
            np.concatenate([np.cos(outer), 1 - np.cos(inner)]),
            np.concatenate([np.sin(outer), 1 - np.sin(inner) - 0.5]),
        ],
        axis=1,
    )
    y = np.concatenate([np.zeros(outer.size, np.int64), np.ones(inner.size, np.int64)])
    generator = np.random.RandomState(seed)
    order = np.arange(num_points)
    generator.shuffle(order)
    x, y = x[order], y[order]
    return x + generator.normal(scale=noise, size=x.shape), y


def two_moons(*, train_size: int = 8000, test_size: int = 2000) -> Split:
    """Two moons in raw coordinates, float32 ``(n, 2)``, with the moon labels."""
    x_train, y_train = make_moons(train_size, noise=0.05, seed=0)
    x_test, y_test = make_moons(test_size, noise=0.05, seed=1)
    return Split(
        x_train.astype(np.float32),
        y_train.astype(np.int32),
        x_test.astype(np.float32),
        y_test.astype(np.int32),
    )


def digits(*, images: bool = False) -> Split:
    """The digits split: raw pixel values 0..16 as float32.

    Args:
      images: if True, ``x`` has shape ``(n, 8, 8)``; otherwise ``(n, 64)``.

    Classifiers should feed ``x / 16``; flows dequantize ``x + u`` with u ~ U[0, 1).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x = bunch.data[order].astype(np.float32)
    y = bunch.target[order].astype(np.int32)
    if images:
        x = x.reshape(-1, 8, 8)
    n = DIGITS_TRAIN_SIZE
    return Split(x[:n], y[:n], x[n:], y[n:])


def digits_for_classifier(*, images: bool = False) -> Split:
    """The digits split scaled for classifiers: pixels ``x / 16`` in [0, 1]."""
    split = digits(images=images)
    return split._replace(
        x_train=split.x_train / DIGITS_MAX, x_test=split.x_test / DIGITS_MAX
    )


def random_pixel_shifts(
    key: jax.Array, images: jax.Array, probability: float
) -> jax.Array:
    """Each image of ``(n, height, width[, channels])`` moved by at most one pixel
    per axis: along each axis, with ``probability``, one pixel up or down (left or
    right, equally likely), the uncovered row or column filled with zeros, the one
    pushed out dropped.

    A data augmentation for small image sets (the digits: 1437 training images) that
    keeps pixel values and image size, so a density model's inputs stay in their
    domain. Pure and jittable. Raises ``ValueError`` for a ``probability`` outside
    ``[0, 1]`` or images of another rank.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> image = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
      >>> moved = random_pixel_shifts(jax.random.key(0), image, probability=1.0)
      >>> moved.shape, int(jnp.sum(moved == 0))  # one row and one column emptied
      ((1, 3, 3, 1), 5)
      >>> bool(jnp.all(random_pixel_shifts(jax.random.key(0), image, 0.0) == image))
      True
    """
    check_in_range("probability", probability, 0.0, 1.0, high_inclusive=True)
    if jnp.ndim(images) not in (3, 4):
        raise ValueError(
            "images must be (n, height, width) or (n, height, width, channels), "
            f"got shape {jnp.shape(images)}"
        )
    images = jnp.asarray(images)
    move_key, sign_key = jax.random.split(key)
    n = images.shape[0]
    move = jax.random.bernoulli(move_key, probability, (n, 2))
    sign = 2 * jax.random.bernoulli(sign_key, 0.5, (n, 2)) - 1
    offsets = (move * sign).astype(jnp.int32)
    widths = ((1, 1), (1, 1)) + ((0, 0),) * (images.ndim - 3)

    def shift(image, offset):
        padded = jnp.pad(image, widths)
        start = (1 - offset[0], 1 - offset[1]) + (0,) * (image.ndim - 2)
        return jax.lax.dynamic_slice(padded, start, image.shape)

    return jax.vmap(shift)(images, offsets)


def split_validation(
    x: np.ndarray, val_size: int, seed: int, *extra: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Hold out ``val_size`` random rows of ``x`` (and of each ``extra`` array).

    Returns ``(x_train, x_val)``, or with extra arrays ``(x_train, x_val, e_train,
    e_val, ...)``, every array split by the same permutation
    ``np.random.default_rng(seed).permutation(len(x))``.

    Example:
      >>> train, val = split_validation(np.arange(10), 3, seed=0)
      >>> len(train), len(val)
      (7, 3)
    """
    if not 0 < val_size < len(x):
        raise ValueError(f"val_size must be in 1..{len(x) - 1}, got {val_size}")
    for array in extra:
        if len(array) != len(x):
            raise ValueError(
                f"arrays to split must share x's length {len(x)}, got {len(array)}"
            )
    order = np.random.default_rng(seed).permutation(len(x))
    train, val = order[val_size:], order[:val_size]
    return tuple(part for array in (x, *extra) for part in (array[train], array[val]))


class RetrievalTask(NamedTuple):
    """A memory to read and labelled queries; see :func:`retrieval_task`."""

    keys: jax.Array  # (memory_size, dim): unit-length rows
    values: jax.Array  # (memory_size, memory_size): one-hot rows, the identity
    mix: jax.Array  # (dim, dim): the distortion, rotation times stretches
    train: tuple[jax.Array, jax.Array]  # x (train_size, dim), target (train_size,)
    test: tuple[jax.Array, jax.Array]  # x (test_size, dim), target (test_size,)


def _retrieval_sample(key, keys, mix, noise, n) -> tuple[jax.Array, jax.Array]:
    k_target, k_noise = jax.random.split(key)
    target = jax.random.randint(k_target, (n,), 0, keys.shape[0])
    clean = keys[target] @ mix.T
    return clean + noise * jax.random.normal(k_noise, clean.shape), target


def retrieval_task(
    key: jax.Array,
    *,
    memory_size: int,
    dim: int,
    noise: float,
    train_size: int,
    test_size: int,
) -> RetrievalTask:
    """A retrieval task: find the memory slot an input was made from.

    ``memory_size`` keys are drawn uniformly on the unit sphere in ``R^dim``, with
    one-hot values (slot ``i`` holds ``e_i``). An input is a distorted, noisy copy of a
    uniformly drawn slot's key,

        x = M key[target] + noise * n,    n ~ N(0, I),

    where ``M = R diag(s)`` is a random rotation ``R`` (QR of a Gaussian matrix) times
    stretches ``s`` spaced geometrically from 0.5 to 2: a reader must learn to undo
    ``M``, and with ``noise > 0`` nearby keys become confusable, so the best softmax
    temperature is finite. With ``noise = 0`` the slots are separable. Arrays are in
    JAX's default float dtype.

    Args:
      key: a ``jax.random`` key; the task is a function of it.
      memory_size: number of slots ``>= 1``.
      dim: key and input size ``>= 1``.
      noise: standard deviation of the input noise per coordinate, ``>= 0``.
      train_size: number of training pairs ``>= 1``.
      test_size: number of test pairs ``>= 1``.

    Returns:
      A :class:`RetrievalTask`; ``train`` and ``test`` are ``(x, target)`` pairs with
      integer targets in ``0..memory_size - 1``.

    Example:
      >>> import jax
      >>> task = retrieval_task(
      ...     jax.random.key(0), memory_size=4, dim=3, noise=0.1, train_size=8,
      ...     test_size=2,
      ... )
      >>> task.keys.shape, task.train[0].shape, task.test[1].shape
      ((4, 3), (8, 3), (2,))
    """
    for name, value in (
        ("memory_size", memory_size),
        ("dim", dim),
        ("train_size", train_size),
        ("test_size", test_size),
    ):
        check_at_least(name, value, 1)
    check_nonnegative("noise", noise)
    k_keys, k_mix, k_train, k_test = jax.random.split(key, 4)
    keys = jax.random.normal(k_keys, (memory_size, dim))
    keys = keys / jnp.linalg.norm(keys, axis=-1, keepdims=True)
    rotation = jnp.linalg.qr(jax.random.normal(k_mix, (dim, dim)))[0]
    stretch = jnp.asarray(np.geomspace(0.5, 2.0, dim), jnp.float32)
    mix = rotation * stretch[None, :]
    return RetrievalTask(
        keys=keys,
        values=jnp.eye(memory_size),
        mix=mix,
        train=_retrieval_sample(k_train, keys, mix, noise, train_size),
        test=_retrieval_sample(k_test, keys, mix, noise, test_size),
    )


def channel_features(
    key: jax.Array, shape: tuple[int, ...], *, dtype: jnp.dtype = jnp.float32
) -> jax.Array:
    """Gaussian features with their own mean and spread per channel (the last axis).

    With ``C = shape[-1]`` channels, per-channel ``m_c ~ N(0, 1)`` and
    ``s_c ~ U[0.5, 3]``,

        x[..., c] = s_c n + m_c,    n ~ N(0, 1) independently per entry,

    so, as with real features, no channel is standardized and normalizing them changes
    them: a test input for normalization layers.

    Args:
      key: a ``jax.random`` key.
      shape: the shape ``(..., C)``, at least one axis.
      dtype: a floating dtype.

    Example:
      >>> import jax
      >>> x = channel_features(jax.random.key(0), (1000, 3))
      >>> x.shape, bool(x.std(axis=0).min() > 0.4)
      ((1000, 3), True)
    """
    if len(shape) < 1:
        raise ValueError(f"shape must have at least one axis (channels), got {shape}")
    kx, ks, km = jax.random.split(key, 3)
    channel = (1,) * (len(shape) - 1) + (shape[-1],)  # broadcasts over the batch
    spread = jax.random.uniform(ks, channel, dtype, 0.5, 3.0)
    mean = jax.random.normal(km, channel, dtype)
    return jax.random.normal(kx, shape, dtype) * spread + mean


class FanOut(NamedTuple):
    """A fan-out problem: ``h(x) = act(weight @ x + bias)`` feeds ``m`` branches
    ``tanh(heads[i] @ h)``; ``points`` are the inputs to evaluate at."""

    weight: jax.Array  # (d, d)
    bias: jax.Array  # (d,)
    heads: jax.Array  # (m, d, d)
    points: jax.Array  # (trials, d)


def fan_out_problem(key: jax.Array, dim: int, branches: int, trials: int) -> FanOut:
    """Standard normal draws in float64 (enable x64 first), the matrices scaled by
    ``1 / sqrt(dim)`` so every pre-activation has unit variance.

    Example:
      >>> import jax
      >>> with jax.enable_x64(True):
      ...     problem = fan_out_problem(jax.random.key(0), 3, 2, 5)
      >>> problem.heads.shape, problem.points.shape
      ((2, 3, 3), (5, 3))
    """
    keys = jax.random.split(key, 4)
    return FanOut(
        jax.random.normal(keys[0], (dim, dim), jnp.float64) / np.sqrt(dim),
        jax.random.normal(keys[1], (dim,), jnp.float64),
        jax.random.normal(keys[2], (branches, dim, dim), jnp.float64) / np.sqrt(dim),
        jax.random.normal(keys[3], (trials, dim), jnp.float64),
    )

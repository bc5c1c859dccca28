"""Offline datasets under chainlab's shared benchmark protocols.

Nothing here touches the network: digits ship with scikit-learn and two moons is
generated (scikit-learn is imported on first use, not with this module).

- Two moons: ``make_moons(noise=0.05)``, train n=8000 ``random_state=0``, test n=2000
  ``random_state=1``.
- Digits: ``load_digits()`` (8x8 images, integer values 0..16), permuted by
  ``np.random.default_rng(0).permutation(1797)``; first 1437 train, last 360 test.
  Classifiers see ``x / 16`` (:func:`digits_for_classifier`); flows dequantize
  ``y = x + u``, ``u ~ U[0, 1)`` and report bits/dim ``NLL(y) / (64 ln 2)``, where a
  uniform model scores ``log2(17) = 4.087``.
- Two-moons NLL is reported in nats per point on the raw coordinates (a
  standardisation's log-determinant added back), after at most 3000 steps of batch 256.
"""

from typing import NamedTuple

import numpy as np

DIGITS_TRAIN_SIZE = 1437
DIGITS_LEVELS = 17  # pixel values 0..16
DIGITS_MAX = 16.0


class Split(NamedTuple):
    """Train and test arrays; ``y_*`` are integer labels (``None`` if unlabelled)."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None


def two_moons(*, train_size: int = 8000, test_size: int = 2000) -> Split:
    """Two moons in raw coordinates, float32 ``(n, 2)``, with the moon labels."""
    from sklearn.datasets import make_moons

    x_train, y_train = make_moons(train_size, noise=0.05, random_state=0)
    x_test, y_test = make_moons(test_size, noise=0.05, random_state=1)
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

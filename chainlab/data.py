"""Offline datasets under the shared benchmark protocols of DESIGN.md.

Nothing here touches the network: digits ship with scikit-learn and two moons is
generated.

- Two moons: ``make_moons(noise=0.05)``, train n=8000 ``random_state=0``, test n=2000
  ``random_state=1``.
- Digits: ``load_digits()`` (8x8 images, integer values 0..16), permuted by
  ``np.random.default_rng(0).permutation(1797)``; first 1437 train, last 360 test.
"""

from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits, make_moons

DIGITS_TRAIN_SIZE = 1437
DIGITS_LEVELS = 17  # pixel values 0..16


class Split(NamedTuple):
    """Train and test arrays; ``y_*`` are integer labels (``None`` if unlabelled)."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None


def two_moons(*, train_size: int = 8000, test_size: int = 2000) -> Split:
    """Two moons in raw coordinates, float32 ``(n, 2)``, with the moon labels."""
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
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x = bunch.data[order].astype(np.float32)
    y = bunch.target[order].astype(np.int32)
    if images:
        x = x.reshape(-1, 8, 8)
    n = DIGITS_TRAIN_SIZE
    return Split(x[:n], y[:n], x[n:], y[n:])

"""Scoring a flow under the shared benchmark protocols (``chainlab.data``).

- Digits protocol: a density on dequantized images ``y = x + u``, ``u ~ U[0, 1)^D``, is
  scored in bits per dimension, ``-log p(y) / (D ln 2)``, on one fixed draw of ``u``
  (:func:`seeded_dequantization`), so two runs score the same ``y``; Theis et al. 2016,
  "A note on the evaluation of generative models", explain why the NLL of ``y`` bounds
  the code length of ``x``.
- Two-moons protocol: NLL in nats per point on the raw coordinates, against the
  generating density itself (:func:`two_moons_log_prob`), the floor no model beats in
  expectation.
- Memorisation: the distance from each sample to its nearest training point
  (:func:`nearest_distances`), compared with the same distance for held-out points.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.validation import check_at_least, check_positive, check_rank

__all__ = [
    "bits_per_dim",
    "nearest_distances",
    "seeded_dequantization",
    "two_moons_log_prob",
]


def bits_per_dim(log_prob: jax.Array, event_size: int) -> jax.Array:
    """Mean bits per dimension ``-mean(log_prob) / (event_size ln 2)``.

    Args:
      log_prob: ``(n,)`` log-densities in nats, e.g. ``flow.log_prob(params, y)``.
      event_size: entries per data point ``D`` (64 for the 8x8 digits).

    Example:
      >>> import math, jax.numpy as jnp
      >>> float(bits_per_dim(jnp.full(3, -64 * math.log(2.0)), 64))
      1.0
    """
    check_at_least("event_size", event_size, 1)
    check_rank("log_prob", log_prob, 1)
    return -jnp.mean(log_prob) * (1.0 / (event_size * math.log(2)))


def seeded_dequantization(x: np.ndarray, *, seed: int = 1) -> np.ndarray:
    """``x + u`` as float32 with ``u ~ U[0, 1)`` from ``np.random.default_rng(seed)``.

    ``u`` fills ``x``'s entries in row-major order, so images and their flattened rows
    get the same draw. The digits protocol scores the test images on the draw of
    ``seed=1``.

    Example:
      >>> y = seeded_dequantization(np.zeros((2, 3)))
      >>> y.dtype, bool(np.all((y >= 0) & (y < 1)))
      (dtype('float32'), True)
    """
    u = np.random.default_rng(seed).uniform(size=np.shape(x))
    return (np.asarray(x) + u).astype(np.float32)


def nearest_distances(
    queries: ArrayLike, references: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance and index of each query's nearest reference.

    Points are flattened beyond their first axis; the sums are in float64.

    Example:
      >>> refs = np.array([[0.0, 0.0], [3.0, 4.0]])
      >>> distance, index = nearest_distances(np.array([[3.0, 5.0]]), refs)
      >>> distance.tolist(), index.tolist()
      ([1.0], [1])
    """
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    r = np.asarray(references, np.float64).reshape(len(references), -1)
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"queries and references must have points of one size, got "
            f"{q.shape[1]} and {r.shape[1]} entries"
        )
    sq = np.sum(q**2, 1)[:, None] - 2 * q @ r.T + np.sum(r**2, 1)[None, :]
    index = np.argmin(sq, axis=1)
    return np.sqrt(np.maximum(sq[np.arange(len(q)), index], 0.0)), index


def two_moons_log_prob(
    x: ArrayLike, *, noise: float = 0.05, num_angles: int = 4000
) -> np.ndarray:
    """``(n,)`` log-density of points under the two-moons generating density.

    ``sklearn.datasets.make_moons`` places half of the points at ``(cos t, sin t)`` and
    half at ``(1 - cos t, 0.5 - sin t)`` for ``t`` uniform on ``[0, pi]``, plus
    Gaussian noise of standard deviation ``noise``; the density is that mixture, its
    integral over ``t`` a mean over ``num_angles`` grid points per moon.

    Away from the ends, on a moon's curve, the density is about
    ``1 / (2 pi sqrt(2 pi) noise)`` (half the mass, spread over the curve's length pi
    and across it by the noise): ``log 1.27 = 0.24``.

    Example:
      >>> round(float(two_moons_log_prob(np.array([[0.0, 1.0]]))[0]), 2)
      0.24
    """
    check_positive("noise", noise)
    check_at_least("num_angles", num_angles, 2)
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (*, 2), got {x.shape}")
    t = np.linspace(0.0, np.pi, num_angles)
    centers = np.concatenate(
        [
            np.stack([np.cos(t), np.sin(t)], axis=1),
            np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1),
        ]
    )
    sq = np.sum((x[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    log_kernel = -sq / (2 * noise**2) - math.log(2 * math.pi * noise**2)
    peak = log_kernel.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.mean(np.exp(log_kernel - peak), axis=1))

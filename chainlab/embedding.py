"""Embeddings for metric learning: the unit sphere, k-NN evaluation, a 2-D view.

A metric-learning network maps inputs to vectors whose distances carry the classes
(Schroff et al., "FaceNet", CVPR 2015). Three tools around the loss itself
(:mod:`chainlab.losses` has the triplet losses and their mining):

- :func:`normalize`: ``z / ||z||_2`` onto the unit sphere, with a gradient that stays
  finite where ``z = 0``;
- :func:`knn_accuracy`: the accuracy of a k-nearest-neighbour vote among reference
  embeddings, the usual read-out of an embedding's quality;
- :func:`principal_components`: the projection onto the first principal axes, to plot.

Example:
  >>> import jax.numpy as jnp
  >>> normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
  [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from chainlab.losses import pnorm
from chainlab.validation import as_real_float, check_at_least, check_positive

__all__ = ["knn_accuracy", "normalize", "principal_components"]


def normalize(z: ArrayLike, *, eps: float = 1e-12) -> jax.Array:
    """Rows of ``z`` onto the unit sphere: ``z / max(||z||_2, eps)`` on the last axis.

    The norm is :func:`chainlab.losses.pnorm`, whose gradient at ``z = 0`` is the
    subgradient 0, and ``eps`` keeps the value finite there, so a zero row maps to 0
    with the finite Jacobian ``I / eps`` (``jnp.linalg.norm`` would give NaN);
    elsewhere the Jacobian is ``(I - u u^T) / ||z||`` with ``u = z / ||z||``.
    ``eps`` must be > 0 when concrete; a traced ``eps`` (under ``jit``) is not
    checked.
    """
    z = as_real_float("z", z)
    check_positive("eps", eps)
    if z.ndim < 1:
        raise ValueError(f"z must have shape (..., d), got {z.shape}")
    return z / jnp.maximum(pnorm(z), eps)[..., None]


def knn_accuracy(
    reference: ArrayLike,
    reference_labels: ArrayLike,
    query: ArrayLike,
    query_labels: ArrayLike,
    *,
    k: int = 5,
    p: float = 2,
) -> float:
    """Fraction of ``query`` rows whose k nearest ``reference`` rows vote their label.

    Each query takes the majority label of its ``k`` nearest reference embeddings in
    the p-norm distance (``1 <= p``, ``math.inf`` for the max norm); a tied vote goes
    to the smallest label. This is ``sklearn.neighbors.KNeighborsClassifier(k,
    p=p).score``, which computes it (exact, float64).

    Args:
      reference: ``(n, d)`` embeddings with labels ``reference_labels`` ``(n,)``.
      query: ``(m, d)`` embeddings with labels ``query_labels`` ``(m,)``.
      k: neighbours that vote, ``1 <= k <= n``.
      p: norm degree of the distance.

    Example:
      >>> reference = np.array([[0.0], [0.1], [1.0], [1.1]])
      >>> knn_accuracy(reference, [0, 0, 1, 1], np.array([[0.2], [0.9]]), [0, 0], k=1)
      0.5
    """
    reference, query = np.asarray(reference), np.asarray(query)
    reference_labels, query_labels = (
        np.asarray(reference_labels),
        np.asarray(query_labels),
    )
    if reference.ndim != 2 or query.ndim != 2 or reference.shape[1] != query.shape[1]:
        raise ValueError(
            "reference and query must have shapes (n, d) and (m, d), got "
            f"{reference.shape} and {query.shape}"
        )
    for name, labels, rows in (
        ("reference_labels", reference_labels, reference),
        ("query_labels", query_labels, query),
    ):
        if labels.shape != rows.shape[:1]:
            raise ValueError(
                f"{name} must have shape ({rows.shape[0]},), got {labels.shape}"
            )
    check_at_least("k", k, 1)
    if k > len(reference):
        raise ValueError(f"k must be at most the {len(reference)} references, got {k}")
    if not p >= 1:
        raise ValueError(f"p must be >= 1 (math.inf for the max norm), got {p}")
    from sklearn.neighbors import KNeighborsClassifier

    metric = {"metric": "chebyshev"} if p == math.inf else {"p": p}
    knn = KNeighborsClassifier(n_neighbors=k, **metric).fit(reference, reference_labels)
    return float(knn.score(query, query_labels))


def principal_components(z: ArrayLike, *, num: int = 2) -> np.ndarray:
    """``z`` centred and projected onto its first ``num`` principal axes ``(n, num)``.

    The axes are the top right singular vectors of the centred ``z`` (float64), so
    column ``j`` has the ``j``-th largest variance; signs follow the SVD.

    Example:
      >>> z = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1]])
      >>> np.abs(principal_components(z, num=1)).round(2).ravel().tolist()
      [2.0, 0.0, 2.0]
    """
    z = np.asarray(z, np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must have shape (n, d), got {z.shape}")
    check_at_least("num", num, 1)
    if num > min(z.shape):
        raise ValueError(
            f"num must be at most {min(z.shape)} for z {z.shape}, got {num}"
        )
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:num].T

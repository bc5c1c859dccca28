"""chainlab.embedding: unit sphere, k-NN accuracy, principal components."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from chainlab import embedding


def test_normalize_puts_rows_on_the_unit_sphere_and_keeps_zero_rows():
    z = jnp.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    chex.assert_trees_all_close(
        embedding.normalize(z), jnp.array([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    )


def test_normalize_jacobian_is_finite_at_zero_and_tangent_elsewhere():
    jacobian = jax.jit(jax.jacrev(embedding.normalize))  # one compile for both points
    chex.assert_trees_all_close(jacobian(jnp.zeros(2)), jnp.eye(2) / 1e-12)  # I / eps
    # Away from 0 the Jacobian is (I - u u^T) / ||z||: it kills the radial direction.
    z = jnp.array([3.0, 4.0])
    u = z / 5.0
    chex.assert_trees_all_close(jacobian(z), (jnp.eye(2) - jnp.outer(u, u)) / 5.0)


def test_knn_accuracy_votes_by_majority_and_breaks_ties_to_the_smallest_label():
    reference = np.array([[0.0], [0.1], [0.2], [1.0], [1.1]])
    labels = np.array([0, 0, 1, 1, 1])
    # k = 3 around 0.05: neighbours 0, 0, 1 -> 0; around 1.05: 1, 1, 1 -> 1.
    query = np.array([[0.05], [1.05]])
    assert embedding.knn_accuracy(reference, labels, query, [0, 1], k=3) == 1.0
    # k = 2 around 0.15: labels 0 and 1 tie -> 0.
    assert embedding.knn_accuracy(reference, labels, [[0.15]], [0], k=2) == 1.0


def test_knn_accuracy_uses_the_p_norm():
    # Query at the origin; reference A = (0.9, 0.9) (label 0), B = (1.2, 0) (label 1).
    # Euclidean: A is 1.27 away, B 1.2 -> 1.  Max norm: A 0.9, B 1.2 -> 0.
    reference, labels, query = [[0.9, 0.9], [1.2, 0.0]], [0, 1], [[0.0, 0.0]]
    assert embedding.knn_accuracy(reference, labels, query, [1], k=1, p=2) == 1.0
    assert embedding.knn_accuracy(reference, labels, query, [0], k=1, p=math.inf) == 1
    assert embedding.knn_accuracy(reference, labels, query, [0], k=1, p=1) == 0.0


def test_principal_components_orders_axes_by_variance():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 3)) * np.array([5.0, 0.1, 1.0])
    projected = embedding.principal_components(z)
    assert projected.shape == (200, 2)
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-12)
    variances = projected.var(axis=0)
    assert variances[0] > variances[1] > 0.1 * 1.0
    # The first axis is the first coordinate (up to sign).
    np.testing.assert_allclose(
        np.abs(np.corrcoef(projected[:, 0], z[:, 0])[0, 1]), 1.0, atol=1e-3
    )

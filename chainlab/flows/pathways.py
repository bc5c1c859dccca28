"""The two gradient pathways of a flow's log-likelihood, split by the chain rule.

The change of variables formula (Dinh et al. 2017, "Density estimation using Real
NVP", equation 3; Papamakarios et al. 2021, "Normalizing flows for probabilistic
modeling and inference", section 2.1)

    ``log p(x) = log N(f(x); 0, I) + sum_k log|det J_k|``

is a sum, so its parameter gradient is the sum of two pieces: the gradient that flows
through ``z = f(x)`` into the base log-density (it pulls the data towards the origin,
contracting) and the gradient that flows through the log-determinants (it pushes
volume out, expanding). At a maximum of the likelihood the two cancel; their per-layer
norms and cosine over training show that tug of war.
"""

from typing import Any

import jax
import jax.numpy as jnp

from chainlab.flows.flow import Flow, standard_normal_log_prob

__all__ = ["gradient_pathways", "layerwise_norms_and_cosine"]

Params = Any


def gradient_pathways(flow: Flow, params: Params, x: jax.Array) -> tuple[Any, Any]:
    """``(base, logdet)``: the two parameter gradients of the mean log-likelihood.

    ``base`` is the gradient of ``mean log N(f(x); 0, I)`` (through ``z = f(x)``),
    ``logdet`` that of ``mean sum_k log|det J_k|`` (through the log-determinants);
    both have the structure of ``params`` and ``base + logdet`` is the gradient of
    ``mean log p(x)``.

    Args:
      flow: a :class:`~chainlab.flows.Flow` (its ``forward`` gives ``(z, logdet)``).
      params: the flow's parameters.
      x: a batch ``(n, *event)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.flows import realnvp
      >>> flow = realnvp(2, num_layers=2, hidden=(4,))
      >>> base, logdet = gradient_pathways(flow, flow.init(jax.random.key(0)),
      ...                                  jnp.ones((3, 2)))
      >>> jax.tree.structure(base) == jax.tree.structure(logdet)
      True
    """

    def base(p):
        return jnp.mean(standard_normal_log_prob(flow.forward(p, x)[0]))

    def logdet(p):
        return jnp.mean(flow.forward(p, x)[1])

    return jax.grad(base)(params), jax.grad(logdet)(params)


def layerwise_norms_and_cosine(
    a: Any, b: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-layer ``(|a_k|, |b_k|, cos(a_k, b_k))`` of two stacked gradient pytrees.

    ``a`` and ``b`` share a structure whose leaves have a leading layer axis ``L`` (the
    stacked parameters of :func:`~chainlab.flows.scan`, e.g. a ``realnvp``'s
    couplings); layer ``k``'s vector is every leaf's slice ``k``, flattened and
    concatenated. Each result has shape ``(L,)``; the cosine of a zero vector is 0.

    Example:
      >>> import jax.numpy as jnp
      >>> a = {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}
      >>> b = {"w": jnp.array([[-3.0, 0.0], [1.0, 0.0]])}
      >>> [v.tolist() for v in layerwise_norms_and_cosine(a, b)]
      [[1.0, 2.0], [3.0, 1.0], [-1.0, 0.0]]
    """
    a, b = _rows(a), _rows(b)
    norm_a = jnp.linalg.norm(a, axis=1)
    norm_b = jnp.linalg.norm(b, axis=1)
    cosine = jnp.sum(a * b, axis=1) / (norm_a * norm_b + 1e-30)
    return norm_a, norm_b, cosine


def _rows(tree: Any) -> jax.Array:
    """The stacked leaves as one flat row per layer ``(L, size)``."""
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], 1)

"""Bad inputs for layers, embeddings and regression (see ``test_bad_inputs.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
from bad_input_case import Case
from flax import nnx

from chainlab import embedding, regression
from chainlab.layers import (
    Maxout,
    MaxoutNNX,
    MemoryReader,
    MemoryReaderNNX,
    TemperatureAttention,
    TemperatureAttentionNNX,
    maxout_routing,
    routed_gradient,
    unit_queries,
)


def _init(layer, *inputs):
    return lambda: layer.init(jax.random.key(0), *inputs)


LAYER_CASES = [
    Case(
        "Maxout pieces=0",
        _init(Maxout(3, pieces=0), jnp.ones(2)),
        ValueError,
        "pieces must be an integer >= 1",
    ),
    Case(
        "Maxout features=0",
        _init(Maxout(0), jnp.ones(2)),
        ValueError,
        "features must be an integer >= 1",
    ),
    Case(
        "Maxout ties=even",
        _init(Maxout(3, ties="even"), jnp.ones(2)),
        ValueError,
        "ties must be one of 'lowest', 'split'",
    ),
    Case(
        "Maxout scalar x",
        _init(Maxout(3), jnp.ones(())),
        ValueError,
        r"x must have shape \(\.\.\., d_in\)",
    ),
    Case(
        "MaxoutNNX pieces=0",
        lambda: MaxoutNNX(2, 3, 0, rngs=nnx.Rngs(0)),
        ValueError,
        "pieces must be an integer >= 1",
    ),
    Case(
        "MaxoutNNX in_features=0",
        lambda: MaxoutNNX(0, 3, rngs=nnx.Rngs(0)),
        ValueError,
        "in_features must be an integer >= 1",
    ),
    Case(
        "maxout_routing kernel rank 2",
        lambda: maxout_routing(
            {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, jnp.ones(2)
        ),
        ValueError,
        "kernel must have rank 3",
    ),
    Case(
        "maxout_routing bias shape",
        lambda: maxout_routing(
            {"kernel": jnp.ones((2, 4, 3)), "bias": jnp.ones((3,))}, jnp.ones(4)
        ),
        ValueError,
        r"bias must have shape \(2, 3\)",
    ),
    Case(
        "maxout_routing x size",
        lambda: maxout_routing(
            {"kernel": jnp.ones((2, 4, 3)), "bias": jnp.ones((2, 3))}, jnp.ones((5, 2))
        ),
        ValueError,
        r"x must have shape \(.*4\)",
    ),
    Case(
        "maxout_routing complex x",
        lambda: maxout_routing(
            {"kernel": jnp.ones((2, 1, 1)), "bias": jnp.ones((2, 1))},
            jnp.ones(1, complex),
        ),
        TypeError,
        "x must be real",
    ),
    Case(
        "routed_gradient winner shape",
        lambda: routed_gradient(
            {"kernel": jnp.ones((2, 1, 3)), "bias": jnp.ones((2, 3))}, jnp.ones(4, int)
        ),
        ValueError,
        r"grads\['bias'\] must have shape",
    ),
    Case(
        "TemperatureAttention init_tau=0",
        lambda: TemperatureAttention(init_tau=0.0).init(
            jax.random.key(0), jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones((1, 1))
        ),
        ValueError,
        "init_tau must be > 0",
    ),
    Case(
        "TemperatureAttentionNNX min_tau=-1",
        lambda: TemperatureAttentionNNX(min_tau=-1.0),
        ValueError,
        "min_tau must be > 0",
    ),
    Case(
        "TemperatureAttentionNNX init_tau=array(-1)",
        lambda: TemperatureAttentionNNX(init_tau=jnp.array(-1.0)),
        ValueError,
        "init_tau must be > 0",
    ),
    Case(
        "unit_queries kernel rank 1",
        lambda: unit_queries(jnp.ones(3), jnp.ones((2, 3))),
        ValueError,
        "kernel must have rank 2",
    ),
    Case(
        "unit_queries x size",
        lambda: unit_queries(jnp.ones((3, 2)), jnp.ones((2, 4))),
        ValueError,
        r"x must have shape \(\.\.\., 3\)",
    ),
    Case(
        "MemoryReader x rank 1",
        _init(MemoryReader(), jnp.ones(2), jnp.ones((3, 2)), jnp.eye(3)),
        ValueError,
        r"x must have shape \(\.\.\., \*, \*\)",
    ),
    Case(
        "MemoryReader min_tau=0",
        _init(
            MemoryReader(min_tau=0.0), jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.eye(3)
        ),
        ValueError,
        "min_tau must be > 0",
    ),
    Case(
        "MemoryReaderNNX key_features=0",
        lambda: MemoryReaderNNX(2, 0),
        ValueError,
        "key_features must be an integer >= 1",
    ),
    Case(
        "MemoryReaderNNX x size",
        lambda: MemoryReaderNNX(2, 2)(jnp.ones((1, 3)), jnp.ones((3, 2)), jnp.eye(3)),
        ValueError,
        r"x must have shape \(\.\.\., 2\)",
    ),
]


REFERENCE, QUERY = np.zeros((4, 2)), np.zeros((3, 2))
LABELS4, LABELS3 = np.zeros(4, int), np.zeros(3, int)

EMBEDDING_CASES = [
    Case(
        "normalize eps=0",
        lambda: embedding.normalize(jnp.ones((2, 3)), eps=0.0),
        ValueError,
        "eps must be > 0",
    ),
    Case(
        "normalize eps=array(-1)",
        lambda: embedding.normalize(jnp.ones((2, 3)), eps=jnp.array(-1.0)),
        ValueError,
        "eps must be > 0",
    ),
    Case(
        "normalize scalar",
        lambda: embedding.normalize(1.0),
        ValueError,
        "z must have shape",
    ),
    Case(
        "normalize complex",
        lambda: embedding.normalize(jnp.ones(3, jnp.complex64)),
        TypeError,
        "z must be real",
    ),
    Case(
        "knn_accuracy k=0",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS4, QUERY, LABELS3, k=0),
        ValueError,
        "k must be an integer >= 1",
    ),
    Case(
        "knn_accuracy k=2.5",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS4, QUERY, LABELS3, k=2.5),
        TypeError,
        "k must be an integer",
    ),
    Case(
        "knn_accuracy k > references",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS4, QUERY, LABELS3, k=5),
        ValueError,
        "k must be at most the 4 references",
    ),
    Case(
        "knn_accuracy p=0.5",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS4, QUERY, LABELS3, k=1, p=0.5),
        ValueError,
        "p must be >= 1",
    ),
    Case(
        "knn_accuracy feature mismatch",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS4, np.zeros((3, 5)), LABELS3),
        ValueError,
        "reference and query must have shapes",
    ),
    Case(
        "knn_accuracy label length",
        lambda: embedding.knn_accuracy(REFERENCE, LABELS3, QUERY, LABELS3),
        ValueError,
        "reference_labels must have shape",
    ),
    Case(
        "principal_components rank 1",
        lambda: embedding.principal_components(np.zeros(5)),
        ValueError,
        "z must have shape",
    ),
    Case(
        "principal_components num too large",
        lambda: embedding.principal_components(np.zeros((5, 2)), num=3),
        ValueError,
        "num must be at most 2",
    ),
]


X, Y = np.zeros((4, 2)), np.zeros(4)

REGRESSION_CASES = [
    Case(
        "contaminated_linear_data num_samples=0",
        lambda: regression.contaminated_linear_data(num_samples=0, num_features=2),
        ValueError,
        "num_samples must be an integer >= 1",
    ),
    Case(
        "contaminated_linear_data noise_std=-1",
        lambda: regression.contaminated_linear_data(
            num_samples=4, num_features=2, noise_std=-1.0
        ),
        ValueError,
        "noise_std must be >= 0",
    ),
    Case(
        "contaminated_linear_data outlier_fraction=1.5",
        lambda: regression.contaminated_linear_data(
            num_samples=4, num_features=2, outlier_fraction=1.5
        ),
        ValueError,
        r"outlier_fraction must be in \[0, 1\]",
    ),
    Case(
        "fit_linear steps=0",
        lambda: regression.fit_linear({"abs": jnp.abs}, X, Y, steps=0, learning_rate=1),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "fit_linear learning_rate=array(-1)",
        lambda: regression.fit_linear(
            {"abs": jnp.abs}, X, Y, steps=1, learning_rate=jnp.array(-1.0)
        ),
        ValueError,
        "learning_rate must be > 0",
    ),
    Case(
        "fit_linear y shape",
        lambda: regression.fit_linear(
            {"abs": jnp.abs}, X, np.zeros(3), steps=1, learning_rate=1.0
        ),
        ValueError,
        "x and y must have shapes",
    ),
    Case(
        "reference_fit loss=cauchy",
        lambda: regression.reference_fit(X, Y, loss="cauchy"),
        ValueError,
        "loss must be one of",
    ),
    Case(
        "reference_fit huber without delta",
        lambda: regression.reference_fit(X, Y, loss="huber"),
        ValueError,
        "delta must be given exactly for loss='huber'",
    ),
    Case(
        "reference_fit delta=array(-1)",
        lambda: regression.reference_fit(X, Y, loss="huber", delta=jnp.array(-1.0)),
        ValueError,
        "delta must be > 0",
    ),
    Case(
        "reference_fit x rank 1",
        lambda: regression.reference_fit(np.zeros(4), Y, loss="squared"),
        ValueError,
        "x and y must have shapes",
    ),
]


CASES = [*LAYER_CASES, *EMBEDDING_CASES, *REGRESSION_CASES]

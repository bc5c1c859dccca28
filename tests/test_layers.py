"""The Flax Maxout layer: shapes, init, routing of gradients, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.activations import maxout
from chainlab.layers import Maxout

# Same computation through Flax and through the function: round-off only.
FLOAT32_TOL = 1e-6
# check_grads in float64 (see tests/test_activations.py for the reasoning).
CHECK_GRADS_TOL = 1e-5


def _layer_and_params(key, features=3, pieces=4, d_in=5, batch=6):
    layer = Maxout(features=features, pieces=pieces)
    kx, ki = jax.random.split(key)
    x = jax.random.normal(kx, (batch, d_in))
    return layer, layer.init(ki, x), x


def test_shapes_and_equivalence_to_the_function(key):
    layer, params, x = _layer_and_params(key)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    assert kernel.shape == (4, 5, 3) and bias.shape == (4, 3)
    y = layer.apply(params, x)
    assert y.shape == (6, 3) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, maxout(x, kernel, bias), rtol=FLOAT32_TOL)
    np.testing.assert_allclose(
        jax.jit(layer.apply)(params, x), y, rtol=FLOAT32_TOL, atol=FLOAT32_TOL
    )
    per_row = jax.vmap(layer.apply, in_axes=(None, 0))(params, x)
    np.testing.assert_allclose(per_row, y, rtol=FLOAT32_TOL, atol=FLOAT32_TOL)
    assert layer.apply(params, x.reshape(2, 3, 5)).shape == (2, 3, 3)


def test_init_has_dense_fan_in_per_piece(key):
    layer = Maxout(features=256, pieces=4)
    params = layer.init(key, jnp.ones((1, 64)))
    kernel = params["params"]["kernel"]
    # LeCun normal with fan-in d_in = 64 (pieces independent): std 1/8. 65536 draws
    # put the sample std within 2% of it.
    assert float(jnp.std(kernel)) == pytest.approx(1 / 8, rel=0.02)
    np.testing.assert_array_equal(params["params"]["bias"], 0.0)


def test_per_sample_gradient_reaches_only_the_winning_pieces(key):
    layer, params, x = _layer_and_params(key)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]

    def per_sample(p, row):
        return jnp.sum(layer.apply(p, row) * jnp.arange(1.0, 4.0))

    grads = jax.vmap(jax.grad(per_sample), in_axes=(None, 0))(params, x)["params"]
    winners = jnp.argmax(jnp.einsum("ni,pio->npo", x, kernel) + bias[None], axis=1)
    winning = jax.nn.one_hot(winners, 4, axis=1)  # (batch, pieces, features)
    np.testing.assert_array_equal(
        grads["bias"], winning * jnp.arange(1.0, 4.0)[None, None]
    )
    loser_kernel = grads["kernel"] * (1 - winning)[:, :, None, :]
    np.testing.assert_array_equal(loser_kernel, 0.0)
    # Exactly one piece per (sample, unit) receives gradient: a fraction 1/k.
    nonzero = jnp.any(grads["kernel"] != 0, axis=2)  # (batch, pieces, features)
    np.testing.assert_array_equal(jnp.sum(nonzero, axis=1), 1)


def test_zero_input_at_init_is_a_tie_won_by_piece_zero(key):
    layer, params, _ = _layer_and_params(key)  # zero biases: all pieces give 0
    grad_bias = jax.grad(lambda p: jnp.sum(layer.apply(p, jnp.zeros(5))))(params)
    expected = jnp.zeros((4, 3)).at[0].set(1.0)
    np.testing.assert_array_equal(grad_bias["params"]["bias"], expected)


def test_check_grads_float64(key, x64):
    layer, params, x = _layer_and_params(key)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x = x.astype(jnp.float64)
    check_grads(layer.apply, (params, x), order=1, atol=CHECK_GRADS_TOL)


@pytest.mark.parametrize(
    ("layer", "x", "message"),
    [
        (Maxout(features=3, pieces=0), jnp.ones(2), "pieces >= 1"),
        (Maxout(features=0), jnp.ones(2), "features >= 1"),
        (Maxout(features=3), jnp.ones(()), r"shape \(\.\.\., d_in\)"),
    ],
)
def test_bad_configuration(key, layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer.init(key, x)

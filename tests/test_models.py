"""The shared Flax networks: shapes, example independence, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab.models import MLP, ConvNet
from chainlab.regularizers import jacobian_penalty


@pytest.mark.parametrize(
    "model", [MLP((16, 10)), ConvNet((4, 8), 10)], ids=["mlp", "cnn"]
)
def test_flat_digits_to_logits_one_example_at_a_time(model, key):
    x = jax.random.uniform(key, (5, 64))
    params = model.init(key, x[:1])
    logits = model.apply(params, x)
    assert logits.shape == (5, 10)
    # No example sees another: one at a time gives the same logits.
    single = jnp.stack([model.apply(params, row) for row in x])
    np.testing.assert_allclose(logits, single, rtol=1e-5, atol=1e-6)
    # So the batched exact penalty is the mean of per-example ||jacrev||_F^2.
    jacobians = jax.vmap(jax.jacrev(lambda row: model.apply(params, row)))(x)
    expected = jnp.mean(jnp.sum(jacobians**2, axis=(1, 2)))
    penalty = jacobian_penalty(model.apply, params, x, method="exact")
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)


def test_convnet_halves_the_image_after_the_first_layer(key):
    model = ConvNet((4, 8, 8), 3)
    params = model.init(key, jnp.zeros((1, 64)))["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
    # 8x8 -> 8x8 -> 4x4 -> 2x2 pixels of 8 channels feed the Dense layer.
    assert params["Dense_0"]["kernel"].shape == (2 * 2 * 8, 3)


def test_convnet_refuses_the_wrong_image_size(key):
    model = ConvNet((4,), 10)
    params = model.init(key, jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match=r"flat images of 64 = 8x8x1 values"):
        model.apply(params, jnp.zeros((2, 63)))

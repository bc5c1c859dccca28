"""The shared Flax networks: shapes, example independence, layer names, bad input."""

import chex
import jax
import jax.numpy as jnp
import pytest

from chainlab.models import (
    MLP,
    ConvNet,
    MaxoutMLP,
    dense_layers,
    maxout_routings,
    maxout_win_fractions,
    tie_maxout_pieces,
)
from chainlab.regularizers import jacobian_penalty


@pytest.mark.parametrize(
    "model", [MLP((16, 10)), ConvNet((4, 8), 10)], ids=["mlp", "cnn"]
)
def test_flat_digits_to_logits_one_example_at_a_time(model, key):
    x = jax.random.uniform(key, (5, 64))
    params = model.init(key, x[:1])

    @jax.jit  # one compiled program for every quantity compared below
    def quantities(params, x):
        logits = model.apply(params, x)
        single = jnp.stack([model.apply(params, row) for row in x])
        jacobians = jax.vmap(jax.jacrev(lambda row: model.apply(params, row)))(x)
        expected = jnp.mean(jnp.sum(jacobians**2, axis=(1, 2)))
        penalty = jacobian_penalty(model.apply, params, x, method="exact")
        return logits, single, expected, penalty

    logits, single, expected, penalty = quantities(params, x)
    assert logits.shape == (5, 10)
    # No example sees another: one at a time gives the same logits.
    chex.assert_trees_all_close(logits, single, rtol=1e-5, atol=1e-6)
    # So the batched exact penalty is the mean of per-example ||jacrev||_F^2.
    chex.assert_trees_all_close(penalty, expected, rtol=1e-5)


def test_convnet_layers_by_name_halve_the_image_after_the_first(key):
    model = ConvNet((4, 8, 8), 3)
    params = model.init(key, jnp.zeros((1, 64)))["params"]
    assert sorted(params) == ["conv_0", "conv_1", "conv_2", "readout"]
    assert params["conv_0"]["kernel"].shape == (3, 3, 1, 4)
    # 8x8 -> 8x8 -> 4x4 -> 2x2 pixels of 8 channels feed the readout.
    assert params["readout"]["kernel"].shape == (2 * 2 * 8, 3)


def test_convnet_refuses_the_wrong_image_size(key):
    model = ConvNet((4,), 10)
    params = model.init(key, jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match=r"flat images of 64 = 8x8x1 values"):
        model.apply(params, jnp.zeros((2, 63)))


def test_dense_layers_follow_the_network_even_past_ten_layers(key):
    # Twelve layers: sorted keys would put dense_10 before dense_2. Equal widths
    # (few distinct shapes to compile); the forward pass below pins the order.
    widths = (3,) * 11 + (2,)
    model = MLP(widths, activation=jnp.tanh)
    params = jax.tree.map(lambda a: a, model.init(key, jnp.zeros(1)))
    layers = dense_layers(params)
    assert [layer["kernel"].shape for layer in layers] == list(
        zip((1, *widths[:-1]), widths, strict=True)
    )
    assert dense_layers(params["params"])[5]["bias"].shape == (widths[5],)
    # Rebuilding the forward pass from the layers gives the module's output.
    x = jnp.array([0.7])
    h = x
    for i, layer in enumerate(layers):
        h = h @ layer["kernel"] + layer["bias"]
        h = jnp.tanh(h) if i < len(layers) - 1 else h
    chex.assert_trees_all_close(h, model.apply(params, x), rtol=1e-5, atol=1e-6)


def test_dense_layers_refuses_parameters_of_another_network(key):
    params = ConvNet((4,), 3).init(key, jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match="must be an MLP's parameters"):
        dense_layers(params)


@pytest.fixture(scope="module")
def maxout():
    model = MaxoutMLP((6, 5), pieces=3, num_outputs=2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 4)))
    return model, params, jax.random.normal(jax.random.key(1), (9, 4))


def test_maxout_win_fractions_count_the_routed_winners(maxout):
    model, params, x = maxout
    _, routings = maxout_routings(model, params, x)
    fractions = maxout_win_fractions(model, params, x)
    assert [f.shape for f in fractions] == [(3, 6), (3, 5)]
    for share, routing in zip(fractions, routings, strict=True):
        chex.assert_trees_all_close(share.sum(axis=0), jnp.ones(share.shape[1]))
        for piece in range(3):
            wins = jnp.mean(routing.winner == piece, axis=0)
            chex.assert_trees_all_close(share[piece], wins)


def test_tie_maxout_pieces_copies_one_piece_everywhere(maxout):
    model, params, x = maxout
    tied = tie_maxout_pieces(model, params, source=2, target=0)
    for name in ("maxout_0", "maxout_1"):
        before, after = params["params"][name], tied["params"][name]
        for leaf in ("kernel", "bias"):
            chex.assert_trees_all_equal(after[leaf][0], before[leaf][2])
            chex.assert_trees_all_equal(after[leaf][1:], before[leaf][1:])
    chex.assert_trees_all_equal(tied["params"]["readout"], params["params"]["readout"])
    # The copy ties it with its source, and the lowest index (the copy) takes the wins.
    _, routings = maxout_routings(model, tied, x)
    assert bool(jnp.all(routings[0].winner != 2))
    assert int(jnp.max(routings[0].tied)) >= 2

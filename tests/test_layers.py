"""Flax layers: Maxout, TemperatureAttention, MemoryReader in linen and NNX; routing."""

import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.test_util import check_grads

from chainlab.activations import maxout
from chainlab.attention import attention, attention_tau_grad
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
from chainlab.models import MaxoutMLP, maxout_routings

# Same computation through Flax and through the function: round-off only.
FLOAT32_TOL = 1e-6
# check_grads in float64 (see tests/test_activations.py for the reasoning).
CHECK_GRADS_TOL = 1e-5
# float32 gradients through a softmax and a normalization, by two code paths: ulps of
# O(1) sums, amplified by the 1/tau of the logits.
GRAD_RTOL = 1e-5
FEATURES, PIECES, D_IN, BATCH = 3, 4, 5, 6


@pytest.fixture(scope="module")
def maxout_case():
    layer = Maxout(features=FEATURES, pieces=PIECES)
    kx, ki = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (BATCH, D_IN))
    params = layer.init(ki, x)
    # Non-zero biases, so no piece ties with another at these inputs.
    bias = 0.1 * jax.random.normal(ki, (PIECES, FEATURES))
    params = {"params": {**params["params"], "bias": bias}}
    return layer, params, x


def _per_sample_grads(apply, params, x):
    weights = jnp.arange(1.0, FEATURES + 1.0)

    def per_sample(p, row):
        return jnp.sum(apply(p, row) * weights)

    return jax.vmap(jax.grad(per_sample), in_axes=(None, 0))(params, x)


def test_shapes_and_equivalence_to_the_function(maxout_case):
    layer, params, x = maxout_case
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    assert kernel.shape == (PIECES, D_IN, FEATURES) and bias.shape == (PIECES, 3)
    y = layer.apply(params, x)
    assert y.shape == (BATCH, FEATURES) and y.dtype == jnp.float32
    chex.assert_trees_all_close(y, maxout(x, kernel, bias), rtol=FLOAT32_TOL)
    per_row = jax.vmap(layer.apply, in_axes=(None, 0))(params, x)
    chex.assert_trees_all_close(per_row, y, rtol=FLOAT32_TOL, atol=FLOAT32_TOL)
    assert layer.apply(params, x.reshape(2, 3, 5)).shape == (2, 3, FEATURES)


def test_init_has_dense_fan_in_per_piece(key):
    params = Maxout(features=256, pieces=4).init(key, jnp.ones((1, 64)))
    # LeCun normal with fan-in d_in = 64 (pieces independent): std 1/8. 65536 draws
    # put the sample std within 2% of it.
    assert float(jnp.std(params["params"]["kernel"])) == pytest.approx(1 / 8, rel=0.02)
    chex.assert_trees_all_equal(params["params"]["bias"], jnp.zeros((4, 256)))
    assert set(params) == {"params"}  # init sows no routing


def test_routing_and_per_sample_gradient_reach_only_the_winners(maxout_case):
    layer, params, x = maxout_case
    routing = maxout_routing(params["params"], x)
    z = jnp.einsum("ni,pio->npo", x, params["params"]["kernel"])
    z = z + params["params"]["bias"][None]
    chex.assert_trees_all_close(routing.pieces, z, rtol=FLOAT32_TOL)
    chex.assert_trees_all_equal(routing.winner, jnp.argmax(z, axis=1))
    chex.assert_trees_all_equal(routing.tied, jnp.ones((BATCH, FEATURES), int))
    # The layer sows the same routing when asked for its intermediates.
    _, state = layer.apply(params, x, mutable=["intermediates"])
    chex.assert_trees_all_close(state["intermediates"]["routing"][0], routing)

    grads = _per_sample_grads(layer.apply, params, x)["params"]
    routed = routed_gradient(grads, routing.winner)
    assert float(routed.to_losers_max_abs) == 0.0
    chex.assert_trees_all_equal(routed.pieces_with_grad, jnp.ones_like(routing.tied))
    winning = jax.nn.one_hot(routing.winner, PIECES, axis=1)
    chex.assert_trees_all_equal(
        grads["bias"], winning * jnp.arange(1.0, 4.0)[None, None]
    )


@pytest.mark.parametrize(("ties", "share"), [("lowest", 1.0), ("split", 1 / PIECES)])
def test_zero_input_ties_every_piece(maxout_case, ties, share):
    _, params, _ = maxout_case
    params = {"params": {**params["params"], "bias": jnp.zeros((PIECES, FEATURES))}}
    layer = Maxout(features=FEATURES, pieces=PIECES, ties=ties)
    x = jnp.zeros((1, D_IN))
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, x)))(params)["params"]
    expected = jnp.full((PIECES, FEATURES), share)
    if ties == "lowest":
        expected = jnp.zeros((PIECES, FEATURES)).at[0].set(1.0)
    chex.assert_trees_all_close(grads["bias"], expected, rtol=FLOAT32_TOL)
    routing = maxout_routing(params["params"], x)
    chex.assert_trees_all_equal(routing.tied, jnp.full((1, FEATURES), PIECES))
    chex.assert_trees_all_equal(routing.winner, jnp.zeros((1, FEATURES), int))
    routed = routed_gradient(jax.tree.map(lambda g: g[None], grads), routing.winner)
    pieces_with_grad = 1 if ties == "lowest" else PIECES
    assert int(routed.pieces_with_grad.max()) == pieces_with_grad


def test_check_grads_float64(maxout_case, x64):
    layer, params, x = maxout_case
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    check_grads(layer.apply, (params, x.astype(jnp.float64)), 1, atol=CHECK_GRADS_TOL)


def test_nnx_maxout_is_the_linen_layer(maxout_case):
    layer, params, x = maxout_case
    model = MaxoutNNX(
        D_IN,
        FEATURES,
        PIECES,
        kernel_init=lambda *_: params["params"]["kernel"],
        bias_init=lambda *_: params["params"]["bias"],
        rngs=nnx.Rngs(0),
    )
    assert model.kernel.shape == (PIECES, D_IN, FEATURES)
    graphdef, state = nnx.split(model)

    def apply(s, x):
        return nnx.merge(graphdef, s)(x)

    chex.assert_trees_all_close(apply(state, x), layer.apply(params, x), rtol=1e-6)
    nnx_grads = _per_sample_grads(apply, state, x)
    linen_grads = _per_sample_grads(layer.apply, params, x)["params"]
    chex.assert_trees_all_close(
        {"kernel": nnx_grads["kernel"][...], "bias": nnx_grads["bias"][...]},
        linen_grads,
        rtol=FLOAT32_TOL,
    )
    routing = maxout_routing(state, x)
    chex.assert_trees_all_equal(
        routing.winner, maxout_routing(params["params"], x).winner
    )


def test_maxout_mlp_routings_are_each_layer_s_own(key):
    model = MaxoutMLP((5, 4), pieces=3, num_outputs=2)
    x = jax.random.normal(key, (BATCH, D_IN))
    params = model.init(key, x)
    outputs, routings = maxout_routings(model, params, x)
    chex.assert_trees_all_close(outputs, model.apply(params, x), rtol=FLOAT32_TOL)
    layer_0 = maxout_routing(params["params"]["maxout_0"], x)
    chex.assert_trees_all_equal(routings[0].winner, layer_0.winner)
    assert [r.pieces.shape for r in routings] == [(BATCH, 3, 5), (BATCH, 3, 4)]


@pytest.fixture(scope="module")
def qkv():
    kq, kk, kv = jax.random.split(jax.random.key(1), 3)
    return (
        jax.random.normal(kq, (2, 3, 4)),
        jax.random.normal(kk, (2, 5, 4)),
        jax.random.normal(kv, (2, 5, 2)),
    )


def test_temperature_attention_linen_and_nnx_agree_with_the_closed_form(qkv):
    q, k, v = qkv
    linen = TemperatureAttention(init_tau=2.0, min_tau=0.01)
    params = linen.init(jax.random.key(0), q, k, v)
    model = TemperatureAttentionNNX(init_tau=2.0, min_tau=0.01)
    graphdef, state = nnx.split(model)
    chex.assert_trees_all_close(model(q, k, v), linen.apply(params, q, k, v))

    def loss_linen(p):
        return jnp.sum(linen.apply(p, q, k, v))

    def loss_nnx(s):
        return jnp.sum(nnx.merge(graphdef, s)(q, k, v))

    by_linen = jax.grad(loss_linen)(params)["params"]["log_tau"]
    by_nnx = jax.grad(loss_nnx)(state)["log_tau"][...]
    # d/dlog tau = tau dL/dtau, with the closed form of chainlab.attention.
    closed = 2.0 * attention_tau_grad(q, k, v, 2.0, jnp.ones((2, 3, 2)))
    chex.assert_trees_all_close(by_linen, closed, rtol=1e-5)
    chex.assert_trees_all_close(by_nnx, closed, rtol=1e-5)


def test_temperature_attention_clips_tau(qkv):
    q, k, v = qkv
    model = TemperatureAttentionNNX(init_tau=1e-4, min_tau=0.5)
    assert float(model.tau) == pytest.approx(0.5)
    clipped = TemperatureAttentionNNX(init_tau=0.5)
    chex.assert_trees_all_close(model(q, k, v), clipped(q, k, v), rtol=1e-6)


def test_unit_queries_have_unit_length_and_the_direction_of_x_w(key):
    kx, kw = jax.random.split(key)
    x, kernel = jax.random.normal(kx, (2, 3, 4)), jax.random.normal(kw, (4, 5))
    q = unit_queries(kernel, x)
    chex.assert_trees_all_close(jnp.linalg.norm(q, axis=-1), jnp.ones((2, 3)))
    chex.assert_trees_all_close(
        q * jnp.linalg.norm(x @ kernel, axis=-1)[..., None],
        x @ kernel,
        rtol=FLOAT32_TOL,
    )


def test_memory_reader_linen_and_nnx_read_the_memory_alike(key):
    kx, kk = jax.random.split(key)
    x = jax.random.normal(kx, (6, 4))
    keys = unit_queries(jnp.eye(3), jax.random.normal(kk, (5, 3)))  # unit rows
    values = jnp.eye(5)
    linen = MemoryReader(init_tau=0.5, min_tau=0.01)
    params = linen.init(jax.random.key(0), x, keys, values)
    model = MemoryReaderNNX(4, 3, init_tau=0.5, min_tau=0.01)
    graphdef, state = nnx.split(model)
    # Same parameters, starting at the identity query map and tau = init_tau.
    chex.assert_trees_all_equal(params["params"], nnx.to_pure_dict(state))
    chex.assert_trees_all_equal(params["params"]["query"], jnp.eye(4, 3))
    read = linen.apply(params, x, keys, values)
    want = attention(unit_queries(jnp.eye(4, 3), x), keys, values, tau=0.5)
    chex.assert_trees_all_close(read, want, rtol=FLOAT32_TOL)
    chex.assert_trees_all_close(model(x, keys, values), read, rtol=FLOAT32_TOL)

    def loss_linen(p):
        return jnp.sum(linen.apply(p, x, keys, values) ** 2)

    def loss_nnx(s):
        return jnp.sum(nnx.merge(graphdef, s)(x, keys, values) ** 2)

    by_linen, by_nnx = jax.grad(loss_linen)(params)["params"], jax.grad(loss_nnx)(state)
    chex.assert_trees_all_close(by_linen, nnx.to_pure_dict(by_nnx), rtol=GRAD_RTOL)
    # d/dlog tau = tau dL/dtau, with the closed form of chainlab.attention.
    q = unit_queries(jnp.eye(4, 3), x)
    closed = 0.5 * attention_tau_grad(q, keys, values, 0.5, 2 * read)
    log_tau_grad = by_linen["attention"]["log_tau"]
    chex.assert_trees_all_close(log_tau_grad, closed, rtol=GRAD_RTOL)

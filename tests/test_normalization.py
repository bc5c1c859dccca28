"""Tests for chainlab.normalization: values, gradients, coupling, running statistics."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.normalization import (
    BatchNormState,
    batch_norm,
    batch_norm_grad_identities,
    batch_norm_inference,
    batch_norm_jacobian,
    batch_norm_stats,
    cross_sample_block_norms,
    cross_sample_jacobian,
    init_batch_norm_state,
    instance_norm,
    layer_norm,
    per_example_decompositions,
    per_example_grads,
    random_affine,
    update_running_stats,
)

# float32 round-off of a normalization of O(1) inputs: a few ulps times a small factor.
F32_TOL = 1e-5
# float64 identities (sums to zero, closed-form Jacobians) hold to round-off.
F64_TOL = 1e-12
# The same closed form relative to block entries that reach 1 / s ~ 1e2 (eps = 0).
F64_RTOL = 1e-10
# check_grads central differences in float64 (its default step is 1e-6 / 1e-3).
CHECK_GRADS_TOL = 1e-5


def _reference(x, axes, scale, offset, eps):
    """NumPy normalization over ``axes``, computed in float64 by hand."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(offset)


NORMS = {
    "batch_norm": (batch_norm, lambda ndim: tuple(range(ndim - 1))),
    "instance_norm": (instance_norm, lambda ndim: tuple(range(1, ndim - 1))),
    "layer_norm": (layer_norm, lambda ndim: (ndim - 1,)),
}


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("batch_norm", (5, 3)),
        ("batch_norm", (3, 4, 2, 3)),
        ("instance_norm", (4, 6, 3)),
        ("instance_norm", (3, 4, 2, 3)),
        ("layer_norm", (5, 3)),
        ("layer_norm", (4, 6, 3)),
    ],
)
def test_values_match_numpy(name, shape, key):
    fn, axes = NORMS[name]
    kx, ka = jax.random.split(key)
    x = 3.0 * jax.random.normal(kx, shape) + 1.0
    scale, offset = random_affine(ka, shape[-1])
    for eps in (0.0, 0.5):
        got = fn(x, scale, offset, eps=eps)
        want = _reference(x, axes(len(shape)), scale, offset, eps)
        assert got.shape == x.shape and got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, atol=F32_TOL, rtol=F32_TOL)


def test_hand_computed_batch_norm_and_layer_norm():
    # Batch [[0, 2], [2, 6]]: column means (1, 4), biased stds (1, 2).
    x = jnp.array([[0.0, 2.0], [2.0, 6.0]])
    one, zero = jnp.ones(2), jnp.zeros(2)
    np.testing.assert_allclose(batch_norm(x, one, zero, eps=0.0), [[-1, -1], [1, 1]])
    # Rows: (0, 2) -> (-1, 1); (2, 6) -> (-1, 1).
    np.testing.assert_allclose(layer_norm(x, one, zero, eps=0.0), [[-1, 1], [-1, 1]])
    # scale/offset act per channel after normalizing.
    y = batch_norm(x, jnp.array([2.0, 3.0]), jnp.array([10.0, 0.0]), eps=0.0)
    np.testing.assert_allclose(y, [[8, -3], [12, 3]])


def test_instance_norm_is_batch_norm_of_each_sample(key):
    # Instance norm of (N, L, C) = batch norm of each sample's (L, C) on its own.
    x = jax.random.normal(key, (3, 5, 2))
    scale, offset = random_affine(key, 2)
    per_sample = jax.vmap(lambda s: batch_norm(s, scale, offset))(x)
    np.testing.assert_allclose(
        instance_norm(x, scale, offset), per_sample, atol=F32_TOL
    )


@pytest.mark.parametrize("name", sorted(NORMS))
def test_jit_and_vmap(name, key):
    fn, _ = NORMS[name]
    x = jax.random.normal(key, (2, 4, 3, 2))  # vmapped axis of 2, then (4, 3, 2)
    scale, offset = random_affine(key, 2)
    eager = jnp.stack([fn(xi, scale, offset) for xi in x])
    jitted = jax.jit(jax.vmap(functools.partial(fn, scale=scale, offset=offset)))(x)
    np.testing.assert_allclose(jitted, eager, atol=F32_TOL)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_check_grads_float64(name, key, x64):
    fn, _ = NORMS[name]
    kx, ka = jax.random.split(key)
    x = jax.random.normal(kx, (2, 3, 2), jnp.float64)
    scale, offset = random_affine(ka, 2, dtype=jnp.float64)
    # Jitted: one compile per transformation instead of one per primitive.
    check_grads(
        jax.jit(lambda x, s, o: fn(x, s, o, eps=1e-3)),
        (x, scale, offset),
        order=2,
        modes=("fwd", "rev"),
        atol=CHECK_GRADS_TOL,
        rtol=CHECK_GRADS_TOL,
    )


def test_batch_norm_jacobian_closed_form_is_autodiffs(key, x64):
    shape, eps = (3, 2, 2), 0.3  # a spatial axis; eps = 0 in the hand-computed test
    kx, ka = jax.random.split(key)
    x = jax.random.normal(kx, shape, jnp.float64)
    scale, offset = random_affine(ka, shape[-1], dtype=jnp.float64)
    bn = functools.partial(batch_norm, scale=scale, offset=offset, eps=eps)

    @jax.jit
    def three_ways(x):  # one compiled program
        closed = batch_norm_jacobian(x, scale, eps=eps)
        return closed, cross_sample_jacobian(bn, x), jax.jacfwd(bn)(x)

    closed, jac, fwd = three_ways(x)
    assert closed.shape == jac.shape == (shape[0], shape[0], *shape[1:], *shape[1:])
    np.testing.assert_allclose(closed, jac, atol=F64_TOL, rtol=F64_RTOL)
    # Same through jacfwd, as a second autodiff mode; channels never mix.
    fwd = jnp.moveaxis(fwd, len(shape), 1)
    np.testing.assert_allclose(fwd, jac, atol=F64_TOL)
    channels = jnp.eye(shape[-1]).reshape((1,) * (closed.ndim - 2) + (-1, shape[-1]))
    off_channel = jnp.moveaxis(closed, len(shape), -2) * (1.0 - channels)
    assert float(jnp.abs(off_channel).max()) == 0.0


def test_batch_norm_jacobian_by_hand():
    # x = (0, 2, 4): mean 2, s = sqrt(8/3), xhat = (-1, 0, 1) * sqrt(3/2).
    jac = batch_norm_jacobian(jnp.array([[0.0], [2.0], [4.0]]), jnp.ones(1), eps=0.0)
    s = np.sqrt(8 / 3)
    want = (np.eye(3) - 1 / 3 - np.outer([-1, 0, 1], [-1, 0, 1]) / 2) / s
    np.testing.assert_allclose(jac[:, :, 0, 0], want, atol=F32_TOL)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_cross_sample_coupling_only_for_batch_norm(name, key):
    fn, _ = NORMS[name]
    kx, ka, kw = jax.random.split(key, 3)
    x = jax.random.normal(kx, (4, 3, 2))
    scale, offset = random_affine(ka, 2)
    readout = jax.random.normal(kw, (3, 2))
    jac = cross_sample_jacobian(
        functools.partial(fn, scale=scale, offset=offset),
        x,
        loss_fn=lambda y: jnp.sum(readout * y),
    )
    assert jac.shape == (4, 4, 3, 2)
    norms = cross_sample_block_norms(jac)
    off_diagonal = norms * (1.0 - jnp.eye(4))
    assert float(jnp.min(jnp.diagonal(norms))) > 0.0
    if name == "batch_norm":
        assert float(jnp.min(off_diagonal + jnp.eye(4))) > 0.0
    else:
        assert float(jnp.max(off_diagonal)) == 0.0  # exactly, not approximately


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_gradient_identities(dtype, key):
    """dL/dx sums to 0 and is orthogonal to xhat when eps = 0; closed form for eps."""
    with jax.enable_x64(dtype == "float64"):
        kx, kg, ka = jax.random.split(key, 3)
        x = 2.0 * jax.random.normal(kx, (6, 2, 3), dtype) + 1.0
        g = jax.random.normal(kg, (6, 2, 3), dtype)
        scale, _ = random_affine(ka, 3, dtype=dtype)
        tol = F32_TOL if dtype == "float32" else F64_TOL
        identities = jax.jit(batch_norm_grad_identities)
        exact, with_eps = identities(x, scale, g, eps=0.0), identities(x, scale, g)
        for measured in (*exact, with_eps.sum_rel, with_eps.formula_error):
            assert measured.shape == (3,) and measured.dtype == dtype
            assert float(measured.max()) < tol
        # eps = 1 gives a clear angle, and the formula still accounts for it.
        large = identities(x, scale, g, eps=1.0)
        assert float(large.xhat_cosine.min()) > 1e-3
        assert float(large.formula_error.max()) < tol


def test_running_stats_are_an_explicit_pure_ema(key):
    x = 2.0 * jax.random.normal(key, (8, 3)) + 5.0
    state = init_batch_norm_state(3)
    new = jax.jit(functools.partial(update_running_stats, momentum=0.9))(state, x)
    mean, var = batch_norm_stats(x)
    np.testing.assert_allclose(new.mean, 0.1 * mean, rtol=F32_TOL)
    np.testing.assert_allclose(new.var, 0.9 + 0.1 * var, rtol=F32_TOL)
    np.testing.assert_array_equal(state.mean, jnp.zeros(3))  # not mutated
    # Repeated updates on one batch converge to its statistics; then inference with the
    # running statistics equals training-mode batch norm on that batch.
    final, _ = jax.lax.scan(
        lambda s, _: (update_running_stats(s, x, momentum=0.5), None),
        state,
        None,
        length=60,
    )
    np.testing.assert_allclose(final.mean, mean, rtol=F32_TOL)
    np.testing.assert_allclose(final.var, var, rtol=F32_TOL)
    scale, offset = random_affine(key, 3)
    np.testing.assert_allclose(
        batch_norm_inference(x, final, scale, offset),
        batch_norm(x, scale, offset),
        atol=10 * F32_TOL,
    )


def test_eps_is_checked_when_concrete_and_not_under_jit():
    x, one, zero = jnp.ones((4, 3)), jnp.ones(3), jnp.zeros(3)
    for eps in (-1.0, jnp.array(-1.0)):
        with pytest.raises(ValueError, match="eps must be >= 0"):
            layer_norm(x, one, zero, eps=eps)
    # A traced eps is not inspected (documented): computed as given.
    traced = jax.jit(lambda e: layer_norm(x, one, zero, eps=e))(jnp.array(0.5))
    np.testing.assert_array_equal(traced, layer_norm(x, one, zero, eps=0.5))


def test_running_stats_carry_no_gradient(key):
    x = jax.random.normal(key, (4, 2))
    grad = jax.grad(
        lambda x: jnp.sum(update_running_stats(init_batch_norm_state(2), x).mean)
    )(x)
    np.testing.assert_array_equal(grad, jnp.zeros_like(x))


def test_inference_is_per_sample_and_vmappable(key):
    state = BatchNormState(mean=jnp.array([1.0, -1.0]), var=jnp.array([4.0, 0.25]))
    scale, offset = jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0])
    x = jax.random.normal(key, (5, 2))
    batched = batch_norm_inference(x, state, scale, offset, eps=0.0)
    single = jax.vmap(
        lambda xi: batch_norm_inference(xi, state, scale, offset, eps=0.0)
    )
    np.testing.assert_allclose(single(x), batched, atol=F32_TOL)
    want = (np.asarray(x) - [1.0, -1.0]) / [2.0, 0.5] * [1.0, 2.0] + [0.0, 1.0]
    np.testing.assert_allclose(batched, want, atol=F32_TOL)


@pytest.mark.parametrize("lane_shape", [(3,), (4, 3)])
def test_axis_name_shares_statistics_across_vmap(lane_shape, key):
    x = jax.random.normal(key, (5, *lane_shape))
    scale, offset = random_affine(key, 3)
    named = jax.vmap(
        lambda xi: batch_norm(xi, scale, offset, axis_name="batch"), axis_name="batch"
    )(x)
    np.testing.assert_allclose(named, batch_norm(x, scale, offset), atol=F32_TOL)
    state = init_batch_norm_state(3)
    lanes = jax.vmap(
        lambda xi: update_running_stats(state, xi, momentum=0.5, axis_name="batch"),
        axis_name="batch",
    )(x)
    whole = update_running_stats(state, x, momentum=0.5)
    np.testing.assert_allclose(lanes.mean[0], whole.mean, atol=F32_TOL)
    np.testing.assert_allclose(lanes.var[-1], whole.var, atol=F32_TOL)


def _per_example_setup(key, norm):
    """x (5, 3) -> norm(x w) -> tanh -> read-out; losses (B,) and their batch sum."""
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (5, 3), jnp.float64)
    w = jax.random.normal(kw, (3, 2), jnp.float64)
    one, zero = jnp.ones(2, jnp.float64), jnp.zeros(2, jnp.float64)

    def losses(w, x, axis_name=None):
        named = {"axis_name": axis_name} if norm is batch_norm else {}
        h = norm(x @ w, one, zero, **named)
        return jnp.tanh(h) @ jnp.array([1.0, -2.0])

    batch_grad = jax.grad(lambda w: jnp.sum(losses(w, x)))(w)
    return losses, w, x, batch_grad


def test_per_example_grads_three_ways_with_batch_norm(key, x64):
    losses, w, x, batch_grad = _per_example_setup(key, batch_norm)
    named = functools.partial(losses, axis_name="batch")

    @jax.jit
    def three_ways(w, x):  # one compiled program
        return (
            per_example_grads(losses, w, x),
            per_example_grads(losses, w, x, method="vmap"),
            per_example_grads(named, w, x, method="vmap", axis_name="batch"),
        )

    in_context, alone, shared = three_ways(w, x)
    assert in_context.shape == alone.shape == shared.shape == (5, 3, 2)
    np.testing.assert_allclose(in_context.sum(0), batch_grad, atol=F64_TOL)
    np.testing.assert_allclose(shared.sum(0), batch_grad, atol=F64_TOL)
    # A batch of one normalizes to 0: no gradient reaches w at all.
    assert float(jnp.abs(alone).max()) == 0.0
    # Shared statistics split the batch gradient by input path, not by loss.
    assert float(jnp.abs(shared - in_context).max()) > 1e-3


def test_per_example_grads_agree_without_coupling(key, x64):
    losses, w, x, batch_grad = _per_example_setup(key, layer_norm)

    @jax.jit
    def two_ways(w, x):  # pytree parameters and batch keep their structure
        def tree_losses(p, b):
            return losses(p["w"], b["x"])

        in_context = per_example_grads(losses, w, x)
        return in_context, per_example_grads(
            tree_losses, {"w": w}, {"x": x}, method="vmap"
        )

    in_context, alone = two_ways(w, x)
    np.testing.assert_allclose(in_context.sum(0), batch_grad, atol=F64_TOL)
    chex.assert_trees_all_close(alone, {"w": in_context}, atol=F64_TOL)


def test_per_example_decompositions_are_the_three_methods(key, x64):
    losses, w, x, batch_grad = _per_example_setup(key, batch_norm)
    ways = jax.jit(per_example_decompositions, static_argnums=0)(losses, w, x)
    named = functools.partial(losses, axis_name="batch")
    chex.assert_trees_all_close(ways.in_context, per_example_grads(losses, w, x))
    chex.assert_trees_all_close(
        ways.alone, per_example_grads(losses, w, x, method="vmap")
    )
    chex.assert_trees_all_close(
        ways.shared,
        per_example_grads(named, w, x, method="vmap", axis_name="batch"),
        atol=F64_TOL,
    )
    np.testing.assert_allclose(ways.batch, batch_grad, atol=F64_TOL)
    np.testing.assert_allclose(ways.shared.sum(0), ways.batch, atol=F64_TOL)
    assert float(jnp.abs(ways.alone).max()) == 0.0  # a batch of one normalizes to 0


def test_per_example_decompositions_agree_without_coupling(key, x64):
    losses, w, x, batch_grad = _per_example_setup(key, layer_norm)
    ways = per_example_decompositions(losses, w, x, axis_name="examples")
    for rows in ways[:3]:
        np.testing.assert_allclose(rows, ways.in_context, atol=F64_TOL)
    np.testing.assert_allclose(ways.batch, batch_grad, atol=F64_TOL)


def test_random_affine_is_a_seeded_non_identity_map(key, x64):
    scale, offset = random_affine(key, 1000, dtype=jnp.float64)
    assert scale.shape == offset.shape == (1000,) and scale.dtype == jnp.float64
    assert 0.5 <= float(scale.min()) and float(scale.max()) <= 2.0
    assert float(jnp.abs(scale - 1).max()) > 0.4 and float(offset.std()) > 0.5
    chex.assert_trees_all_equal(random_affine(key, 1000, dtype=jnp.float64)[1], offset)

"""Tests for chainlab.normalization: values, gradients, coupling, running statistics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.normalization import (
    BatchNormState,
    batch_norm,
    batch_norm_inference,
    batch_norm_stats,
    cross_sample_block_norms,
    cross_sample_jacobian,
    init_batch_norm_state,
    instance_norm,
    layer_norm,
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


def _affine(key, channels, dtype=jnp.float32):
    k1, k2 = jax.random.split(key)
    scale = jax.random.uniform(k1, (channels,), dtype, 0.5, 2.0)
    offset = jax.random.normal(k2, (channels,), dtype)
    return scale, offset


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
    scale, offset = _affine(ka, shape[-1])
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
    scale, offset = _affine(key, 2)
    per_sample = jax.vmap(lambda s: batch_norm(s, scale, offset))(x)
    np.testing.assert_allclose(
        instance_norm(x, scale, offset), per_sample, atol=F32_TOL
    )


@pytest.mark.parametrize("name", sorted(NORMS))
def test_jit_and_vmap(name, key):
    fn, _ = NORMS[name]
    x = jax.random.normal(key, (2, 4, 3, 2))  # vmapped axis of 2, then (4, 3, 2)
    scale, offset = _affine(key, 2)
    eager = jnp.stack([fn(xi, scale, offset) for xi in x])
    jitted = jax.jit(jax.vmap(functools.partial(fn, scale=scale, offset=offset)))(x)
    np.testing.assert_allclose(jitted, eager, atol=F32_TOL)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_check_grads_float64(name, key, x64):
    fn, _ = NORMS[name]
    kx, ka = jax.random.split(key)
    x = jax.random.normal(kx, (2, 3, 2), jnp.float64)
    scale, offset = _affine(ka, 2, jnp.float64)
    # Jitted: one compile per transformation instead of one per primitive.
    check_grads(
        jax.jit(lambda x, s, o: fn(x, s, o, eps=1e-3)),
        (x, scale, offset),
        order=2,
        modes=("fwd", "rev"),
        atol=CHECK_GRADS_TOL,
        rtol=CHECK_GRADS_TOL,
    )


def _batch_norm_block_closed_form(x, scale, eps):
    """dy[a, c]/dx[b, c] = scale/s * (delta_ab - 1/N - xhat_a xhat_b / N), (N, C) x."""
    n = x.shape[0]
    mean = x.mean(axis=0, keepdims=True)
    s = np.sqrt(((x - mean) ** 2).mean(axis=0, keepdims=True) + eps)
    xhat = (x - mean) / s
    eye = np.eye(n)[:, :, None]
    inner = eye - 1.0 / n - xhat[:, None, :] * xhat[None, :, :] / n  # (a, b, c)
    return inner * (np.asarray(scale) / s[0])[None, None, :]


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_sample_jacobian_matches_closed_form(eps, key, x64):
    kx, ka = jax.random.split(key)
    x = jax.random.normal(kx, (5, 3), jnp.float64)
    scale, offset = _affine(ka, 3, jnp.float64)
    jac = cross_sample_jacobian(
        functools.partial(batch_norm, scale=scale, offset=offset, eps=eps), x
    )
    assert jac.shape == (5, 5, 3, 3)  # (a, b, out channel, in channel)
    want = _batch_norm_block_closed_form(np.asarray(x), scale, eps)
    np.testing.assert_allclose(
        jnp.diagonal(jac, axis1=2, axis2=3), want, atol=F64_TOL, rtol=F64_RTOL
    )
    off_channel = jac * (1.0 - jnp.eye(3))[None, None, :, :]
    assert float(jnp.abs(off_channel).max()) == 0.0
    # Same through jacfwd, as a second autodiff mode.
    fwd = jax.jacfwd(lambda x: batch_norm(x, scale, offset, eps=eps))(x)
    np.testing.assert_allclose(jnp.moveaxis(fwd, 2, 1), jac, atol=F64_TOL)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_cross_sample_coupling_only_for_batch_norm(name, key):
    fn, _ = NORMS[name]
    kx, ka, kw = jax.random.split(key, 3)
    x = jax.random.normal(kx, (4, 3, 2))
    scale, offset = _affine(ka, 2)
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
    """dL/dx sums to 0 over the batch and is orthogonal to xhat when eps = 0."""
    with jax.enable_x64(dtype == "float64"):
        kx, kg, ka = jax.random.split(key, 3)
        x = 2.0 * jax.random.normal(kx, (6, 3), dtype) + 1.0
        g = jax.random.normal(kg, (6, 3), dtype)
        scale, offset = _affine(ka, 3, dtype)
        tol = F32_TOL if dtype == "float32" else F64_TOL

        def loss(x, eps):
            return jnp.sum(g * batch_norm(x, scale, offset, eps=eps))

        for eps in (0.0, 0.1):
            grad = jax.grad(loss)(x, eps)
            np.testing.assert_allclose(jnp.sum(grad, axis=0), 0.0, atol=tol)
            mean, var = batch_norm_stats(x)
            s = jnp.sqrt(var + eps)
            xhat = (x - mean[None, :]) / s[None, :]
            inner = jnp.sum(grad * xhat, axis=0)
            # Exact formula: (scale / s) * eps / (var + eps) * sum_a g_a xhat_a.
            want = scale / s * eps / (var + eps) * jnp.sum(g * xhat, axis=0)
            np.testing.assert_allclose(inner, want, atol=tol * 10)
            if eps == 0.0:
                np.testing.assert_allclose(inner, 0.0, atol=tol * 10)


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
    scale, offset = _affine(key, 3)
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
    scale, offset = _affine(key, 3)
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


def test_axis_name_per_example_gradients_sum_to_batch_gradient(key, x64):
    # vmap(grad) with shared statistics splits the batch gradient by input path:
    # rows sum to it, but row i is not d loss_i / d w (which jacrev gives).
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (5, 3), jnp.float64)
    w = jax.random.normal(kw, (3, 2), jnp.float64)
    one, zero = jnp.ones(2, jnp.float64), jnp.zeros(2, jnp.float64)

    def sample_loss(w, xi):
        y = batch_norm(xi @ w, one, zero, axis_name="batch")
        return jnp.sum(jnp.tanh(y) * jnp.array([1.0, -2.0]))

    def losses(w):
        return jnp.tanh(batch_norm(x @ w, one, zero)) @ jnp.array([1.0, -2.0])

    rows = jax.vmap(jax.grad(sample_loss), in_axes=(None, 0), axis_name="batch")(w, x)
    in_context = jax.jacrev(losses)(w)
    batch_grad = jax.grad(lambda w: jnp.sum(losses(w)))(w)
    np.testing.assert_allclose(rows.sum(0), batch_grad, atol=F64_TOL)
    np.testing.assert_allclose(in_context.sum(0), batch_grad, atol=F64_TOL)
    assert float(jnp.abs(rows - in_context).max()) > 1e-3

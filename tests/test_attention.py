"""Tests for chainlab.attention: values, masks, closed-form dL/dtau, temperature."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.attention import attention, attention_tau_grad, temperature_from_log

# float32 round-off of a softmax-weighted sum of O(1) values.
F32_TOL = 1e-5
# Closed form vs autodiff in float32: ~100 ulps of the O(1) gradient sums.
F32_GRAD_RTOL = 1e-4
# Closed form vs autodiff in float64: the same sums in a different order.
F64_TOL = 1e-12
# Central differences in float64 with step H: truncation O(H^2) plus round-off
# O(eps / H) ~ 1e-10 on O(1) values.
FD_STEP = 1e-5
FD_TOL = 1e-7
# check_grads' own float64 finite differences.
CHECK_GRADS_TOL = 1e-5


def _qkv(key, prefix=(), tq=3, tk=4, d=5, dv=2, dtype=jnp.float32):
    kq, kk, kv = jax.random.split(key, 3)
    return (
        jax.random.normal(kq, (*prefix, tq, d), dtype),
        jax.random.normal(kk, (*prefix, tk, d), dtype),
        jax.random.normal(kv, (*prefix, tk, dv), dtype),
    )


def _reference(q, k, v, tau, mask=None):
    """Attention in float64 NumPy, straight from the definition."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    z = np.einsum("...qd,...kd->...qk", q, k) / tau
    w = np.exp(z - z.max(axis=-1, keepdims=True))
    if mask is not None:
        w = np.where(mask, w, 0.0)
    w = w / w.sum(axis=-1, keepdims=True)
    return np.einsum("...qk,...kv->...qv", w, v)


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_values_match_numpy(tau, key):
    q, k, v = _qkv(key, prefix=(2,))
    got = attention(q, k, v, tau=tau)
    assert got.shape == (2, 3, 2)
    np.testing.assert_allclose(got, _reference(q, k, v, tau), atol=F32_TOL)


def test_hand_computed_two_keys():
    # One query, logits (1, 0) / tau: weight on key 0 is sigmoid(1 / tau).
    q = jnp.array([[1.0, 0.0]])
    k = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    v = jnp.array([[1.0], [0.0]])
    for tau in (0.5, 1.0, 2.0):
        want = 1.0 / (1.0 + math.exp(-1.0 / tau))
        assert abs(float(attention(q, k, v, tau=tau)[0, 0]) - want) < F32_TOL


def test_tau_sqrt_d_matches_jax_dot_product_attention(key):
    # jax.nn.dot_product_attention uses (B, T, heads, d) and scales by 1/sqrt(d).
    q, k, v = _qkv(key, prefix=(2, 3), dv=5)  # (B, heads, T, d)
    mask = jnp.tril(jnp.ones((3, 4), bool))

    @jax.jit  # both in one program
    def both(q, k, v):
        ours = attention(q, k, v, tau=math.sqrt(5), mask=mask)
        theirs = jax.nn.dot_product_attention(
            *(jnp.swapaxes(a, 1, 2) for a in (q, k, v)),
            mask=jnp.broadcast_to(mask, (2, 3, 3, 4)),
        )
        return ours, theirs

    ours, theirs = both(q, k, v)
    np.testing.assert_allclose(ours, jnp.swapaxes(theirs, 1, 2), atol=F32_TOL)


def test_mask_drops_keys(key):
    q, k, v = _qkv(key)
    mask = jnp.array([[True, False, True, True]] * 3)
    got = attention(q, k, v, tau=0.7, mask=mask)
    np.testing.assert_allclose(got, _reference(q, k, v, 0.7, mask), atol=F32_TOL)
    keep = jnp.array([0, 2, 3])
    np.testing.assert_allclose(
        got, attention(q, k[keep], v[keep], tau=0.7), atol=F32_TOL
    )


def test_fully_masked_row_is_zero_with_finite_gradients(key):
    q, k, v = _qkv(key)
    k = k.at[1].mul(1e4)  # a huge masked logit must not overflow anything
    mask = jnp.array(
        [[True, False, True, True], [False] * 4, [True, False, False, False]]
    )

    def loss(q, k, v, tau):
        return jnp.sum(jnp.sin(attention(q, k, v, tau=tau, mask=mask)))

    @jax.jit  # value, reverse and forward mode in one program
    def everything(q, k, v, tau):
        out = attention(q, k, v, tau=tau, mask=mask)
        grads = jax.grad(loss, argnums=(0, 1, 2, 3))(q, k, v, tau)
        tangent = jax.jvp(lambda t: loss(q, k, v, t), (tau,), (jnp.ones_like(tau),))
        return out, grads, tangent[1]

    out, grads, tangent = everything(q, k, v, jnp.float32(0.5))
    np.testing.assert_array_equal(out[1], jnp.zeros(2))
    np.testing.assert_allclose(out[2], v[0], atol=F32_TOL)
    for g in grads:
        assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_array_equal(grads[0][1], jnp.zeros(5))  # masked query row
    np.testing.assert_array_equal(grads[1][1], jnp.zeros(5))  # never-attended key
    assert bool(jnp.isfinite(tangent))  # forward mode too


def test_large_logits_are_stable():
    q = jnp.array([[100.0, 0.0]])
    k = jnp.array([[100.0, 0.0], [0.0, 100.0]])
    v = jnp.array([[3.0], [-1.0]])
    out, grad = jax.value_and_grad(lambda t: attention(q, k, v, tau=t).sum())(0.01)
    assert float(out) == 3.0 and float(grad) == 0.0


def test_check_grads_float64(key, x64):
    q, k, v = _qkv(key, prefix=(2,), tq=2, tk=3, d=3, dtype=jnp.float64)
    mask = jnp.array([[True, True, False], [False, True, True]])

    def unmasked_and_masked(q, k, v, tau):
        return jnp.stack([attention(q, k, v, tau=tau, mask=m) for m in (None, mask)])

    # Jitted, unmasked and masked in one function: one compile per transformation
    # instead of one per primitive and per mask.
    check_grads(
        jax.jit(unmasked_and_masked),
        (q, k, v, jnp.float64(0.8)),
        order=2,
        modes=("fwd", "rev"),
        atol=CHECK_GRADS_TOL,
        rtol=CHECK_GRADS_TOL,
    )


@pytest.mark.parametrize("masked", [False, True])
def test_tau_grad_closed_form_vs_autodiff_and_fd(masked, key, x64):
    q, k, v = _qkv(key, prefix=(2,), dtype=jnp.float64)
    cotangent = jax.random.normal(jax.random.fold_in(key, 1), (2, 3, 2), jnp.float64)
    mask = jnp.array([[True, False, True, True]] * 3) if masked else None

    def loss(t):
        return jnp.sum(cotangent * attention(q, k, v, tau=t, mask=mask))

    @jax.jit
    def three_ways(tau):  # compiled once, tau traced: reused for every temperature
        h = FD_STEP * tau
        fd = (loss(tau + h) - loss(tau - h)) / (2 * h)
        closed = attention_tau_grad(q, k, v, tau, cotangent, mask=mask)
        return closed, jax.grad(loss)(tau), fd

    for tau in (0.05, 1.0, 20.0):
        closed, auto, fd = three_ways(jnp.float64(tau))
        scale = max(abs(float(auto)), 1.0)  # relative error, absolute near zero
        assert closed.shape == ()
        assert abs(float(closed - auto)) <= F64_TOL * scale
        assert abs(float(closed - fd)) <= FD_TOL * scale


def test_tau_grad_is_the_logit_sum_formula(key, x64):
    # dL/dtau = -(1/tau) sum_j z_j dL/dz_j, with dL/dz from autodiff through softmax.
    q, k, v = _qkv(key, dtype=jnp.float64)
    cotangent = jax.random.normal(jax.random.fold_in(key, 2), (3, 2), jnp.float64)

    @jax.jit  # one program, not one per primitive
    def closed_and_formula(q, k, v, tau, cotangent):
        z = q @ k.T / tau
        dz = jax.grad(lambda z: jnp.sum(cotangent * (jax.nn.softmax(z) @ v)))(z)
        want = -jnp.sum(z * dz) / tau
        return attention_tau_grad(q, k, v, tau, cotangent), want

    got, want = closed_and_formula(q, k, v, jnp.float64(0.7), cotangent)
    np.testing.assert_allclose(got, want, atol=F64_TOL)


def test_tau_grad_under_jit_and_vmap(key):
    # One temperature per head via vmap; compare with autodiff head by head.
    q, k, v = _qkv(key, prefix=(3,))
    cotangent = jax.random.normal(jax.random.fold_in(key, 3), (3, 3, 2))
    taus = jnp.array([0.5, 1.0, 2.0])
    closed = jax.jit(jax.vmap(attention_tau_grad))(q, k, v, taus, cotangent)

    def head_loss(q, k, v, tau, ct):
        return jnp.sum(ct * attention(q, k, v, tau=tau))

    auto = jax.jit(jax.vmap(jax.grad(head_loss, argnums=3)))(q, k, v, taus, cotangent)
    assert closed.shape == (3,)
    np.testing.assert_allclose(closed, auto, rtol=F32_GRAD_RTOL, atol=F32_TOL)
    out = jax.jit(jax.vmap(lambda q, k, v, t: attention(q, k, v, tau=t)))(q, k, v, taus)
    np.testing.assert_allclose(
        out[2], attention(q[2], k[2], v[2], tau=2.0), atol=F32_TOL
    )


def test_tau_is_checked_when_concrete_and_not_under_jit(key):
    q, k, v = _qkv(key)
    for tau in (0.0, -1.0, jnp.array(0.0), jnp.array(-1.0)):
        with pytest.raises(ValueError, match="tau must be > 0"):
            attention(q, k, v, tau=tau)
    # A traced tau (a learned temperature) is not inspected: documented behaviour.
    out = jax.jit(lambda t: attention(q, k, v, tau=t))(jnp.array(-1.0))
    np.testing.assert_allclose(out, _reference(q, k, v, -1.0), atol=F32_TOL)
    # Shapes are static: checked under jit too.
    with pytest.raises(ValueError, match="k must have shape"):
        jax.jit(attention)(q, k[:, :2], v)


def test_temperature_from_log_values_and_gradient():
    np.testing.assert_allclose(temperature_from_log(jnp.log(0.3)), 0.3, rtol=F32_TOL)
    clipped = temperature_from_log(
        jnp.array([-9.0, 0.0, 9.0]), min_tau=0.01, max_tau=100.0
    )
    np.testing.assert_allclose(clipped, [0.01, 1.0, 100.0], rtol=F32_TOL)
    assert temperature_from_log(0).dtype == jnp.float32  # ints are promoted

    def tau(log_tau):
        return temperature_from_log(log_tau, min_tau=0.5, max_tau=2.0)

    dtau = jax.jit(jax.vmap(jax.grad(tau)))
    inside, at_low, at_high, below, above = (
        0.1,
        math.log(0.5),
        math.log(2.0),
        -3.0,
        3.0,
    )
    got = dtau(jnp.array([inside, at_low, at_high, below, above]))
    # d tau / d log_tau = tau inside and on the bounds (not half: no tie rule), else 0.
    np.testing.assert_allclose(got, [math.exp(0.1), 0.5, 2.0, 0.0, 0.0], rtol=F32_TOL)


def test_temperature_from_log_check_grads_float64(x64):
    # Inside the clip (the bounds are kinks, covered above) tau = exp(log_tau).
    check_grads(
        lambda log_tau: temperature_from_log(log_tau, min_tau=0.5, max_tau=2.0),
        (jnp.array([-0.4, 0.1, 0.6]),),
        order=2,
        modes=("fwd", "rev"),
        atol=CHECK_GRADS_TOL,
        rtol=CHECK_GRADS_TOL,
    )

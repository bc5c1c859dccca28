"""Kink conventions of chainlab.activations, checked in every autodiff mode."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab.activations import elu, leaky_relu, maxout, relu, relu_reverse_only

# check_grads in float64 compares autodiff with its own finite differences (eps 1e-4 by
# default in float64); second-order central differences then agree to ~1e-6, so 1e-5
# leaves a margin without hiding a wrong rule (those are off by O(1)).
CHECK_GRADS_TOL = 1e-5
# float32 values against jax.nn references that use the same formula: a few ulps.
FLOAT32_TOL = 1e-6
# Exact float64 identities (same formula, different code path): round-off only.
FLOAT64_TOL = 1e-12
# One-sided differences with step 1e-7 in float64: truncation alpha h / 2 ~ 3e-8,
# rounding eps / h ~ 2e-9; a wrong side is off by 1 - alpha = 0.5.
ONE_SIDED_FD_TOL = 1e-6

# Points away from the kink, so every mode and finite differences are well defined.
SMOOTH_POINTS = np.array([-2.5, -0.7, -1e-3, 1e-3, 0.4, 3.0])
ALPHA = 0.5  # alpha != 1 so ELU's left and right derivatives at 0 differ.

ELEMENTWISE = {
    "relu": (relu, jax.nn.relu),
    "leaky_relu": (lambda x: leaky_relu(x, 0.1), lambda x: jax.nn.leaky_relu(x, 0.1)),
    "elu_right": (lambda x: elu(x, ALPHA), lambda x: jax.nn.elu(x, ALPHA)),
    "elu_left": (lambda x: elu(x, ALPHA, side="left"), lambda x: jax.nn.elu(x, ALPHA)),
}

# The derivative each function must give at the kink x == 0.
KINK_DERIVATIVE = {"relu": 0.0, "leaky_relu": 0.1, "elu_right": 1.0, "elu_left": ALPHA}
# Its second derivative at 0 follows the same side of the kink.
KINK_SECOND_DERIVATIVE = {
    "relu": 0.0,
    "leaky_relu": 0.0,
    "elu_right": 0.0,
    "elu_left": ALPHA,
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_values_match_jax_nn(name):
    f, reference = ELEMENTWISE[name]
    x = jnp.asarray(np.concatenate([SMOOTH_POINTS, [0.0, -30.0, 30.0]]), jnp.float32)
    np.testing.assert_allclose(f(x), reference(x), rtol=FLOAT32_TOL, atol=FLOAT32_TOL)
    assert f(x).dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_grad_matches_plain_autodiff_away_from_kink(name, x64):
    f, reference = ELEMENTWISE[name]
    x = jnp.asarray(SMOOTH_POINTS)

    @jax.jit  # one program for all four derivatives
    def derivatives(x):
        return [
            (jax.vmap(jax.grad(g))(x), jax.vmap(jax.grad(jax.grad(g)))(x))
            for g in (f, reference)
        ]

    (ours, ours2), (theirs, theirs2) = derivatives(x)
    np.testing.assert_allclose(ours, theirs, rtol=FLOAT64_TOL, atol=FLOAT64_TOL)
    np.testing.assert_allclose(ours2, theirs2, rtol=FLOAT64_TOL, atol=FLOAT64_TOL)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_check_grads_float64(name, x64):
    f, _ = ELEMENTWISE[name]
    x = jnp.asarray(SMOOTH_POINTS)
    check_grads(jax.jit(f), (x,), order=2, modes=("fwd", "rev"), atol=CHECK_GRADS_TOL)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_kink_derivative_in_every_mode(name, dtype, x64):
    f, _ = ELEMENTWISE[name]
    zero = jnp.zeros((), dtype)
    want = KINK_DERIVATIVE[name]
    second = KINK_SECOND_DERIVATIVE[name]
    # Eagerly once; every other mode inside one jitted program (one compile, not one
    # per primitive): the rules are traced the same way under jit as eagerly.
    assert float(jax.grad(f)(zero)) == pytest.approx(want)

    @jax.jit
    def modes(zero, x):
        first = (
            jax.jvp(f, (zero,), (jnp.ones((), dtype),))[1],
            jax.jacfwd(f)(zero),
            jax.grad(f)(zero),
            jax.vmap(jax.grad(f))(x)[1],
        )
        seconds = (
            jax.hessian(f)(zero),
            jax.jacfwd(jax.grad(f))(zero),
            jax.jacrev(jax.grad(f))(zero),
        )
        return first, seconds

    first, seconds = modes(zero, jnp.array([-1.0, 0.0, 2.0], dtype))
    for value in first:
        assert value.dtype == dtype
        assert float(value) == pytest.approx(want)
    for value in seconds:
        assert float(value) == pytest.approx(second)


@pytest.mark.parametrize("side", ["right", "left"])
def test_elu_kink_matches_one_sided_finite_difference(side, x64):
    # The right convention is the limit of forward differences, the left one of
    # backward differences.
    h = 1e-7
    f = lambda x: elu(x, ALPHA, side=side)  # noqa: E731
    one_sided = (f(h) - f(0.0)) / h if side == "right" else (f(0.0) - f(-h)) / h
    assert float(jax.grad(f)(0.0)) == pytest.approx(
        float(one_sided), abs=ONE_SIDED_FD_TOL
    )


def test_jnp_maximum_splits_the_kink_but_relu_does_not():
    assert float(jax.grad(lambda x: jnp.maximum(x, 0.0))(0.0)) == 0.5
    assert float(jax.grad(relu)(0.0)) == 0.0


def test_reverse_only_relu_matches_relu_in_reverse_mode_and_refuses_forward(x64):
    x = jnp.asarray(np.concatenate([SMOOTH_POINTS, [0.0]]))

    @jax.jit  # one program for the values and both reverse-mode derivatives
    def reverse(x):
        return [
            (g(x), jax.vmap(jax.grad(g))(x), jax.vmap(jax.jacrev(jax.grad(g)))(x))
            for g in (relu_reverse_only, relu)
        ]

    for ours, theirs in zip(*reverse(x), strict=True):
        np.testing.assert_array_equal(ours, theirs)  # the kink x = 0 included
    check_grads(relu_reverse_only, (x[:-1],), order=1, modes=("rev",))
    for forward in (jax.jacfwd, jax.hessian):
        with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
            forward(relu_reverse_only)(0.0)


def test_jacfwd_equals_jacrev_on_a_batch(key):
    x = jnp.concatenate([jax.random.normal(key, (5,)), jnp.zeros((1,))])
    for f, _ in ELEMENTWISE.values():
        np.testing.assert_array_equal(jax.jacfwd(f)(x), jax.jacrev(f)(x))


def test_parameters_are_differentiable(x64):
    x = jnp.asarray(SMOOTH_POINTS)
    plain_leaky = lambda s: jnp.sum(jnp.where(x > 0, x, s * x))  # noqa: E731
    ours = jax.grad(lambda s: jnp.sum(leaky_relu(x, s)))(0.2)
    np.testing.assert_allclose(ours, jax.grad(plain_leaky)(0.2), rtol=FLOAT64_TOL)
    plain_elu = lambda a: jnp.sum(jax.nn.elu(x, a))  # noqa: E731
    for side in ("right", "left"):
        ours = jax.grad(lambda a: jnp.sum(elu(x, a, side=side)))(0.7)  # noqa: B023
        np.testing.assert_allclose(ours, jax.grad(plain_elu)(0.7), rtol=FLOAT64_TOL)
        check_grads(
            lambda x, a: elu(x, a, side=side),  # noqa: B023
            (x, 0.7),
            order=2,
            atol=CHECK_GRADS_TOL,
        )
    check_grads(leaky_relu, (x, 0.2), order=2, atol=CHECK_GRADS_TOL)


def test_finite_at_edge_inputs():
    x = jnp.array([-1e30, -100.0, -1e-30, 0.0, 1e-30, 100.0, 1e30], jnp.float32)
    for side in ("right", "left"):
        f = lambda x: elu(x, ALPHA, side=side)  # noqa: E731, B023
        for derivative in (jax.grad(f), jax.grad(jax.grad(f))):
            assert bool(jnp.all(jnp.isfinite(jax.vmap(derivative)(x))))
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.hessian(relu))(x))))


def test_integer_input_is_promoted_and_complex_refused():
    assert relu(jnp.array([-2, 3])).dtype == jnp.float32
    with pytest.raises(TypeError, match="must be real"):
        elu(jnp.array([1j]))


@pytest.mark.parametrize("f", [leaky_relu, elu])
def test_parameter_must_be_scalar_or_broadcast_at_equal_rank(f):
    x = jnp.ones((2, 3))
    per_channel = jnp.full((1, 3), 0.5)
    assert f(x, per_channel).shape == (2, 3)
    for bad in (jnp.ones(3), jnp.ones((2, 2)), jnp.ones((1, 2, 3))):
        message = (
            r"must be a scalar or an array of the input's rank that broadcasts against"
            rf" it, got shape {re.escape(str(bad.shape))} for input shape \(2, 3\)"
        )
        with pytest.raises(ValueError, match=message):
            f(x, bad)
        with pytest.raises(ValueError, match=message):
            jax.jit(f)(x, bad)


def test_knobs_are_checked_when_concrete_and_not_under_jit():
    for alpha in (-1.0, jnp.array(-1.0)):
        with pytest.raises(ValueError, match="alpha must be >= 0"):
            elu(jnp.ones(2), alpha)
    # A traced alpha (a learned one) is not inspected: computed as given.
    traced = jax.jit(elu)(jnp.array([-1.0]), jnp.array(-2.0))
    np.testing.assert_allclose(traced, [-2.0 * np.expm1(-1.0)], rtol=FLOAT32_TOL)


# --- maxout -------------------------------------------------------------------------


def _random_maxout(key, k=3, d_in=4, d_out=2, batch=(5,)):
    kx, kw, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (*batch, d_in))
    w = jax.random.normal(kw, (k, d_in, d_out))
    b = jax.random.normal(kb, (k, d_out))
    return x, w, b


def test_maxout_value_and_batch_shapes(key):
    x, w, b = _random_maxout(key, batch=(2, 5))
    y = maxout(x, w, b)
    assert y.shape == (2, 5, 2)
    pieces = jnp.einsum("nmi,pio->nmpo", x, w) + b[None, None]
    np.testing.assert_allclose(y, jnp.max(pieces, axis=2), rtol=FLOAT32_TOL)
    np.testing.assert_allclose(maxout(x[0, 0], w, b), y[0, 0], rtol=FLOAT32_TOL)
    np.testing.assert_allclose(jax.jit(maxout)(x, w, b), y, rtol=FLOAT32_TOL)
    vmapped = jax.vmap(maxout, in_axes=(0, None, None))(x, w, b)
    np.testing.assert_allclose(vmapped, y, rtol=FLOAT32_TOL)


def test_maxout_gradient_goes_to_the_winner_only(key):
    x, w, b = _random_maxout(key, batch=())
    winner = jnp.argmax(jnp.einsum("i,pio->po", x, w) + b, axis=0)  # (d_out,)
    for unit in range(2):
        gw, gb = jax.grad(lambda w, b: maxout(x, w, b)[unit], argnums=(0, 1))(w, b)  # noqa: B023
        expected_gb = jnp.zeros_like(b).at[winner[unit], unit].set(1.0)
        np.testing.assert_array_equal(gb, expected_gb)
        expected_gw = jnp.zeros_like(w).at[winner[unit], :, unit].set(x)
        np.testing.assert_array_equal(gw, expected_gw)


def test_maxout_tie_goes_to_lowest_index_never_split():
    w = jnp.ones((3, 2, 1))  # three identical pieces: every input is a three-way tie
    b = jnp.zeros((3, 1))
    x = jnp.array([0.5, -2.0])
    gb = jax.grad(lambda b: maxout(x, w, b)[0])(b)
    np.testing.assert_array_equal(gb[:, 0], [1.0, 0.0, 0.0])
    tangent = jnp.zeros_like(b).at[1, 0].set(1.0)
    assert float(jax.jvp(lambda b: maxout(x, w, b)[0], (b,), (tangent,))[1]) == 0.0
    # jnp.max shares a tie among the tied entries: the trap maxout avoids.
    split = jax.grad(lambda b: jnp.max(jnp.einsum("i,pio->po", x, w) + b, axis=0)[0])
    np.testing.assert_allclose(split(b)[:, 0], [1 / 3, 1 / 3, 1 / 3])


def test_maxout_check_grads_and_modes_float64(key, x64):
    x, w, b = _random_maxout(key)
    x, w, b = (jnp.asarray(a, jnp.float64) for a in (x, w, b))
    # Second order is covered by the exact zero Hessian below.
    check_grads(
        jax.jit(maxout), (x, w, b), order=1, modes=("fwd", "rev"), atol=CHECK_GRADS_TOL
    )

    @jax.jit
    def jacobians_and_hessian(x, w, b):
        jacobians = [
            (
                jax.jacfwd(maxout, argnums=argnum)(x, w, b),
                jax.jacrev(maxout, argnums=argnum)(x, w, b),
            )
            for argnum in (0, 1)
        ]
        return jacobians, jax.hessian(lambda x: maxout(x, w, b)[0, 0])(x)

    jacobians, hessian = jacobians_and_hessian(x, w, b)
    for fwd, rev in jacobians:
        np.testing.assert_allclose(fwd, rev, atol=FLOAT64_TOL)
    # Piecewise linear in x: the Hessian of any output is exactly zero.
    np.testing.assert_array_equal(hessian, jnp.zeros_like(hessian))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((4,), (3, 4), (3, 2)), "weight must have rank 3"),
        (((5,), (3, 4, 2), (3, 2)), r"x must have shape \(\.\.\., 4\)"),
        (((4,), (3, 4, 2), (2, 2)), r"bias must have shape \(3, 2\)"),
    ],
)
def test_maxout_shape_errors(shapes, message):
    arrays = [jnp.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=message):
        maxout(*arrays)
    with pytest.raises(ValueError, match=message):
        jax.jit(maxout)(*arrays)

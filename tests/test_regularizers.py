"""Tests for chainlab.regularizers: Jacobian penalties by nested differentiation."""

import json
import math
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab import activations, regularizers
from chainlab.losses import cross_entropy
from chainlab.models import MLP, dense_layers
from chainlab.regularizers import (
    METHODS,
    OneHiddenLayer,
    estimator_samples,
    estimator_study,
    estimator_variance,
    exact_mode,
    input_gradient_norm,
    jacobian_frobenius_sq,
    jacobian_penalty,
    one_hidden_layer,
    one_hidden_layer_grad_errors,
    one_hidden_layer_jacobian,
    one_hidden_layer_mean_penalty_grad,
    one_hidden_layer_penalty_grad,
    penalized_classification_loss,
    penalty_relative_std,
    with_jacobian_penalty,
)

# float32 sums of a few dozen products: a few ulps of relative error each.
RTOL_F32 = 1e-5
# float32 second derivatives computed in different orders: rounding through two
# differentiation passes and a batch mean.
GRAD_RTOL_F32 = 1e-4
# float64 agreement of two exact computations of the same quantity.
RTOL_F64 = 1e-10
# check_grads compares autodiff to central differences with eps ~ 1e-4 in float64.
FD_TOL = 1e-5
# Monte Carlo checks: the mean must sit within this many standard errors.
N_SIGMA = 4.0
# Monte Carlo variance: with 4000 draws the sample variance of these heavy-tailed
# (chi-square-like) estimates has a relative standard error below 10%.
VARIANCE_RTOL = 0.25
N_KEYS = 4000
ESTIMATORS = ("projection", "forward_projection")


def _net(params, x):
    """A small nonlinear map (D,) -> (C,) closing over params."""
    w1, b1, w2 = params
    return w2 @ jnp.tanh(w1 @ x + b1)


def _net_params(key, d, c, hidden=4, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, (hidden, d), dtype),
        0.1 * jax.random.normal(k2, (hidden,), dtype),
        jax.random.normal(k3, (c, hidden), dtype),
    )


def _brute_force(f, x):
    return jnp.sum(jnp.square(jax.jacrev(f)(x)))


@pytest.mark.parametrize("d, c", [(6, 3), (3, 6)], ids=["wide", "tall"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_matches_jacrev_and_jacfwd(key, d, c, dtype):
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        params = _net_params(key, d, c, dtype=dtype)
        x = jax.random.normal(jax.random.key(1), (d,), dtype)
        f = partial(_net, params)
        value, by_jacrev, by_jacfwd = jax.jit(
            lambda x: (
                jacobian_frobenius_sq(f, x),
                _brute_force(f, x),
                jnp.sum(jnp.square(jax.jacfwd(f)(x))),
            )
        )(x)
        rtol = RTOL_F64 if dtype == jnp.float64 else RTOL_F32
        assert value.dtype == dtype
        np.testing.assert_allclose(value, by_jacrev, rtol=rtol)
        np.testing.assert_allclose(value, by_jacfwd, rtol=rtol)


def test_exact_handles_arbitrary_shapes(key):
    """x (2, 3) and f(x) (2, 2): R sums over every input and output entry."""
    w = jax.random.normal(key, (4, 6))

    def f(x):
        return jnp.sin(w @ x.reshape(6)).reshape(2, 2)

    x = jax.random.normal(jax.random.key(1), (2, 3))
    np.testing.assert_allclose(
        jacobian_frobenius_sq(f, x), _brute_force(f, x), rtol=RTOL_F32
    )


def test_exact_uses_forward_mode_when_inputs_are_few():
    """A while loop has JVPs but no VJPs, so this only works in forward mode."""

    def f(x):  # (2,) -> (5,), D <= C
        def body(carry):
            i, y = carry
            return i + 1, jnp.sin(y) + x[1]

        n = jnp.asarray(3) + jnp.zeros((), jnp.int32)  # not a static trip count
        _, y = jax.lax.while_loop(lambda c: c[0] < n, body, (0, x[0] * jnp.ones(5)))
        return y

    x = jnp.array([0.3, -0.2])
    expected = jnp.sum(jnp.square(jax.jacfwd(f)(x)))
    np.testing.assert_allclose(jacobian_frobenius_sq(f, x), expected, rtol=RTOL_F32)
    with pytest.raises(ValueError, match="Reverse-mode"):
        jax.jacrev(f)(x)


def test_exact_uses_reverse_mode_when_outputs_are_few():
    """A custom_vjp has no JVP rule, so this only works in reverse mode."""

    @jax.custom_vjp
    def square(x):
        return x**2

    square.defvjp(lambda x: (x**2, x), lambda x, g: (2 * x * g,))

    def f(x):  # (5,) -> (2,), D > C
        return jnp.stack([jnp.sum(square(x)), jnp.sum(x)])

    x = jnp.arange(5.0)
    # R = ||2x||^2 + ||1||^2
    np.testing.assert_allclose(
        jacobian_frobenius_sq(f, x), 4 * jnp.sum(x**2) + 5, rtol=RTOL_F32
    )


@pytest.mark.parametrize("method", METHODS)
def test_linear_map_gives_weight_norm(x64, key, method):
    """For f(x) = W x, J = W everywhere; estimators match ||W||_F^2 in expectation."""
    w = jax.random.normal(key, (3, 5), jnp.float64)
    target = jnp.sum(w**2)
    x = jnp.ones(5, jnp.float64)
    if method == "exact":
        np.testing.assert_allclose(
            jacobian_frobenius_sq(lambda x: w @ x, x), target, rtol=RTOL_F64
        )
        return
    keys = jax.random.split(jax.random.key(7), N_KEYS)
    draws = jax.jit(
        jax.vmap(
            lambda k: jacobian_frobenius_sq(lambda x: w @ x, x, method=method, key=k)
        )
    )(keys)
    stderr = jnp.std(draws) / np.sqrt(N_KEYS)
    assert abs(jnp.mean(draws) - target) < N_SIGMA * stderr


@pytest.mark.parametrize("method", ESTIMATORS)
def test_estimators_are_unbiased_with_predicted_variance(x64, key, method):
    """estimator_study: sample means within N_SIGMA standard errors of the exact
    value, sample variances at the closed form, falling as 1 / num_projections."""
    params = _net_params(key, 6, 4, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (2, 6), jnp.float64)
    f = partial(_net, params)
    study = estimator_study(
        f,
        xs,
        method=method,
        key=jax.random.key(3),
        num_draws=N_KEYS,
        num_projections=(1, 4),
        chunk=1000,
    )
    exact = jax.vmap(partial(jacobian_frobenius_sq, f))(xs)
    chex.assert_trees_all_close(study.exact, exact, rtol=RTOL_F64)
    assert jnp.all(study.z_score < N_SIGMA)
    np.testing.assert_allclose(
        study.variance, study.predicted_variance, rtol=VARIANCE_RTOL
    )
    assert jnp.all(study.variance[1] < study.variance[0] / 2)
    chex.assert_trees_all_close(
        study.relative_variance(predicted=True)[1],
        study.relative_variance(predicted=True)[0] / 4,
        rtol=RTOL_F64,
    )
    assert abs(study.log_log_slope() + 1) < 0.15


def test_projection_beats_gaussian_probes(key):
    jac = jax.random.normal(key, (10, 64))
    proj = estimator_variance(jac, method="projection")
    gauss = estimator_variance(jac, method="forward_projection")
    assert 0 < proj < gauss
    assert estimator_variance(jac, method="exact") == 0


def test_single_output_projection_is_exact(key):
    w = jax.random.normal(key, (1, 4))
    x = jnp.ones(4)
    value = jacobian_frobenius_sq(lambda x: w @ x, x, method="projection", key=key)
    np.testing.assert_allclose(value, jnp.sum(w**2), rtol=RTOL_F32)


@pytest.mark.parametrize("d, c", [(5, 3), (3, 5)], ids=["wide", "tall"])
def test_parameter_gradient_of_exact_matches_brute_force(x64, key, d, c):
    """Reverse-over-reverse (wide) and reverse-over-forward (tall) vs jacrev."""
    params = _net_params(key, d, c, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (d,), jnp.float64)
    grads, expected = jax.jit(
        lambda params: (
            jax.grad(lambda p: jacobian_frobenius_sq(partial(_net, p), x))(params),
            jax.grad(lambda p: _brute_force(partial(_net, p), x))(params),
        )
    )(params)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=RTOL_F64, atol=RTOL_F64)


@pytest.mark.parametrize("method", METHODS)
def test_parameter_gradients_match_finite_differences(x64, key, method):
    """With the key fixed the estimate is a smooth function of the parameters."""
    params = _net_params(key, 4, 3, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4,), jnp.float64)

    @jax.jit
    def penalty(*p):
        return jacobian_frobenius_sq(
            partial(_net, p), x, method=method, key=jax.random.key(2), num_projections=2
        )

    check_grads(penalty, params, order=1, modes=["rev"], atol=FD_TOL, rtol=FD_TOL)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_estimator_gradients_are_unbiased(x64, key, method):
    params = _net_params(key, 4, 3, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4,), jnp.float64)

    def grad_at(k):
        return jax.grad(
            lambda p: jacobian_frobenius_sq(partial(_net, p), x, method=method, key=k)
        )(params)

    exact = jax.grad(lambda p: jacobian_frobenius_sq(partial(_net, p), x))(params)
    draws = jax.jit(jax.vmap(grad_at))(jax.random.split(jax.random.key(5), N_KEYS))
    for g, e in zip(draws, exact, strict=True):
        stderr = jnp.std(g, axis=0) / np.sqrt(N_KEYS)
        # Each component within N_SIGMA standard errors (stderr floors at 1e-12
        # for components that are deterministic, e.g. exactly zero).
        assert jnp.all(jnp.abs(jnp.mean(g, axis=0) - e) <= N_SIGMA * stderr + 1e-12)


class _TinyMLP(nn.Module):
    """4 -> 5 -> 3, its layers named ``hidden`` and ``out``."""

    activation: object = jnp.tanh

    @nn.compact
    def __call__(self, x):
        x = self.activation(nn.Dense(5, name="hidden")(x))
        return nn.Dense(3, name="out")(x)


def test_jacobian_penalty_on_flax_model_under_jit(key):
    """Exact: the batch mean of brute-force per-example penalties, with gradients."""
    model = _TinyMLP()
    x = jax.random.normal(key, (7, 4))
    params = model.init(key, x)

    def brute(p):
        return jnp.mean(
            jax.vmap(lambda xi: _brute_force(partial(model.apply, p), xi))(x)
        )

    @jax.jit
    def both(p):
        return (
            jax.value_and_grad(
                lambda p: jacobian_penalty(model.apply, p, x, method="exact")
            )(p),
            jax.value_and_grad(brute)(p),
        )

    (value, grads), (expected, expected_grads) = both(params)
    np.testing.assert_allclose(value, expected, rtol=RTOL_F32)
    for g, e in zip(
        jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True
    ):
        np.testing.assert_allclose(g, e, rtol=GRAD_RTOL_F32, atol=GRAD_RTOL_F32)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_jacobian_penalty_estimators_are_unbiased_per_batch(x64, key, method):
    model = _TinyMLP()
    x = jax.random.normal(key, (5, 4), jnp.float64)
    params = jax.tree.map(
        lambda a: a.astype(jnp.float64), model.init(key, x.astype(jnp.float32))
    )
    exact = jacobian_penalty(model.apply, params, x, method="exact")
    draws = jax.jit(
        jax.vmap(
            lambda k: jacobian_penalty(model.apply, params, x, method=method, key=k)
        )
    )(jax.random.split(jax.random.key(4), N_KEYS))
    stderr = jnp.std(draws) / np.sqrt(N_KEYS)
    assert abs(jnp.mean(draws) - exact) < N_SIGMA * stderr
    # A batch of one draws the same probes as the single-input function.
    single = jacobian_frobenius_sq(
        lambda z: model.apply(params, z), x[0], method=method, key=key
    )
    batch_of_one = jacobian_penalty(model.apply, params, x[:1], method=method, key=key)
    np.testing.assert_allclose(single, batch_of_one, rtol=RTOL_F64)


def test_with_jacobian_penalty_adds_the_scaled_penalty(key):
    model = _TinyMLP()
    x = jax.random.normal(key, (6, 4))
    y = jnp.arange(6) % 3
    params = model.init(key, x)

    def cross_entropy(p, batch, k):
        logits = model.apply(p, batch[0])
        logp = jax.nn.log_softmax(logits)
        loss = -jnp.mean(jnp.take_along_axis(logp, batch[1][:, None], axis=1))
        return loss, {"ce": loss}

    loss = with_jacobian_penalty(
        cross_entropy, model.apply, strength=0.5, method="exact", has_aux=True
    )
    (total, metrics), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        params, (x, y), jax.random.key(1)
    )
    penalty = jacobian_penalty(model.apply, params, x, method="exact")
    np.testing.assert_allclose(metrics["jacobian_penalty"], penalty, rtol=RTOL_F32)
    np.testing.assert_allclose(total, metrics["ce"] + 0.5 * penalty, rtol=RTOL_F32)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("method", METHODS)
def test_return_outputs_shares_the_forward_pass(key, method):
    """Outputs equal apply_fn's; a loss built on them has with_jacobian_penalty's
    value and gradients."""
    model = _TinyMLP()
    x = jax.random.normal(key, (6, 4))
    y = jnp.arange(6) % 3
    params = model.init(key, x)

    def cross_entropy(logits):
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def shared(p, k):
        logits, penalty = jacobian_penalty(
            model.apply, p, x, method=method, key=k, return_outputs=True
        )
        return cross_entropy(logits) + 0.5 * penalty

    generic = with_jacobian_penalty(
        lambda p, batch, k: cross_entropy(model.apply(p, batch[0])),
        model.apply,
        strength=0.5,
        method=method,
    )
    # with_jacobian_penalty hands the second half of its key to the penalty.
    _, penalty_key = jax.random.split(jax.random.key(1))

    @jax.jit
    def both(p):
        return (
            jax.value_and_grad(shared)(p, penalty_key),
            jax.value_and_grad(generic)(p, (x, y), jax.random.key(1)),
        )

    (value, grads), (expected, expected_grads) = both(params)
    np.testing.assert_allclose(value, expected, rtol=RTOL_F32)
    for g, e in zip(
        jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True
    ):
        np.testing.assert_allclose(g, e, rtol=GRAD_RTOL_F32, atol=GRAD_RTOL_F32)
    outputs, _ = jacobian_penalty(
        model.apply, params, x, method=method, key=key, return_outputs=True
    )
    np.testing.assert_allclose(outputs, model.apply(params, x), rtol=RTOL_F32)


@pytest.mark.parametrize("method", METHODS)
def test_penalized_classification_loss_is_cross_entropy_plus_penalty(key, method):
    """The logits of the penalty's pass give the same value and gradients as a
    separate forward pass; the penalty gets the whole key."""
    model = _TinyMLP()
    x = jax.random.normal(key, (6, 4))
    y = jnp.arange(6) % 3
    params = model.init(key, x)
    loss = penalized_classification_loss(model.apply, strength=0.5, method=method)

    def separate(p, k):
        penalty = jacobian_penalty(model.apply, p, x, method=method, key=k)
        return jnp.mean(cross_entropy(model.apply(p, x), y)) + 0.5 * penalty

    @jax.jit
    def both(p, k):
        return jax.value_and_grad(loss)(p, (x, y), k), jax.value_and_grad(separate)(
            p, k
        )

    (value, grads), (expected, expected_grads) = both(params, jax.random.key(1))
    np.testing.assert_allclose(value, expected, rtol=RTOL_F32)
    chex.assert_trees_all_close(
        grads, expected_grads, rtol=GRAD_RTOL_F32, atol=GRAD_RTOL_F32
    )


@pytest.mark.parametrize(
    "activation",
    [
        activations.relu,
        activations.leaky_relu,
        activations.elu,
        partial(activations.elu, side="left", alpha=0.5),
    ],
    ids=["relu", "leaky_relu", "elu", "elu_left"],
)
def test_finite_with_kinked_activations_at_the_kink(key, activation):
    """x = 0 and zero biases put every pre-activation exactly on the kink."""
    model = _TinyMLP(activation=activation)
    x = jnp.zeros((3, 4))
    params = jax.tree.map(jnp.zeros_like, model.init(key, x))
    w = jax.random.normal(key, (4, 5))
    v = jax.random.normal(jax.random.key(1), (5, 3))
    params["params"]["hidden"]["kernel"] = w
    params["params"]["out"]["kernel"] = v

    @jax.jit
    def penalties(p):
        return {
            m: jax.value_and_grad(
                lambda p, m=m: jacobian_penalty(model.apply, p, x, method=m, key=key)
            )(p)
            for m in METHODS
        }

    for value, grads in penalties(params).values():
        assert jnp.isfinite(value)
        assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))
    # At the kink J = v^T diag(s'(0)) w^T with the documented one-sided s'(0).
    slope = jax.grad(activation)(0.0)
    expected = slope**2 * jnp.sum(jnp.square(w @ v))
    np.testing.assert_allclose(penalties(params)["exact"][0], expected, rtol=RTOL_F32)


def test_input_gradient_norm_matches_explicit_gradient(key):
    w = jax.random.normal(key, (4,))
    x = jax.random.normal(jax.random.key(1), (3, 4))
    norms = jax.vmap(partial(input_gradient_norm, lambda x: jnp.sum(jnp.tanh(w * x))))(
        x
    )
    expected = jnp.linalg.norm(w[None, :] * (1 - jnp.tanh(w[None, :] * x) ** 2), axis=1)
    np.testing.assert_allclose(norms, expected, rtol=RTOL_F32)


# Closed-form s', s'' (tanh, sigmoid, softplus) and scalar autodiff (elu).
ACTS = (jnp.tanh, jax.nn.sigmoid, jax.nn.softplus, activations.elu)
ACT_IDS = ("tanh", "sigmoid", "softplus", "elu")


def _one_hidden_layer_params(key, dtype, d=5, h=7, c=3):
    """Weights (in, out) as in Flax: w1 (D, H), w2 (H, C)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return OneHiddenLayer(
        jax.random.normal(k1, (d, h), dtype),
        jax.random.normal(k2, (h,), dtype),
        jax.random.normal(k3, (h, c), dtype),
        jax.random.normal(k4, (c,), dtype),
    )


@pytest.mark.parametrize("activation", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_hidden_layer_closed_form_matches_autodiff(key, activation, dtype):
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        rtol = RTOL_F64 if dtype == jnp.float64 else GRAD_RTOL_F32
        params = _one_hidden_layer_params(key, dtype)
        x = jax.random.normal(jax.random.key(1), (5,), dtype)
        f = partial(one_hidden_layer, activation=activation)

        @jax.jit
        def both(params, x):
            closed = (
                one_hidden_layer_jacobian(params, x, activation=activation),
                one_hidden_layer_penalty_grad(params, x, activation=activation),
            )
            auto = (
                jax.jacfwd(partial(f, params))(x),
                jax.value_and_grad(lambda p: jacobian_frobenius_sq(partial(f, p), x))(
                    params
                ),
            )
            return closed, auto

        (jac, (value, grads)), (auto_jac, (auto_value, auto_grads)) = both(params, x)
        np.testing.assert_allclose(jac, auto_jac, rtol=rtol)
        np.testing.assert_allclose(value, auto_value, rtol=rtol)
        for name in OneHiddenLayer._fields:
            np.testing.assert_allclose(
                getattr(grads, name),
                getattr(auto_grads, name),
                rtol=rtol,
                atol=rtol * float(jnp.max(jnp.abs(getattr(auto_grads, name))) + 1),
                err_msg=name,
            )


def test_one_hidden_layer_closed_form_matches_finite_differences(x64, key):
    params = _one_hidden_layer_params(key, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5,), jnp.float64)
    _, grads = one_hidden_layer_penalty_grad(params, x)
    eps = 1e-6
    for name in ("w1", "b1", "w2"):
        direction = jax.random.normal(jax.random.key(2), getattr(params, name).shape)
        direction = direction.astype(jnp.float64)

        def r(t, name=name, direction=direction):
            p = params._replace(**{name: getattr(params, name) + t * direction})
            return one_hidden_layer_penalty_grad(p, x)[0]

        fd = (jax.jit(r)(eps) - jax.jit(r)(-eps)) / (2 * eps)
        np.testing.assert_allclose(
            jnp.sum(getattr(grads, name) * direction), fd, rtol=FD_TOL
        )


def test_one_hidden_layer_from_a_flax_mlp_by_structure(key):
    """dense_layers reaches an MLP's layers (and its gradients') by structure."""
    model = MLP((6, 3))
    x = jax.random.normal(key, (4,))
    params = model.init(key, x)
    net = OneHiddenLayer.from_layers(dense_layers(params))
    chex.assert_trees_all_close(
        one_hidden_layer(net, x), model.apply(params, x), rtol=RTOL_F32
    )
    grads = jax.grad(lambda p: jacobian_frobenius_sq(lambda z: model.apply(p, z), x))(
        params
    )
    _, closed = one_hidden_layer_penalty_grad(net, x)
    chex.assert_trees_all_close(
        closed,
        OneHiddenLayer.from_layers(dense_layers(grads)),
        rtol=GRAD_RTOL_F32,
        atol=GRAD_RTOL_F32,
    )


def test_estimator_samples_are_the_single_draws_in_chunks(key):
    """Draw k uses split(key)[k], whatever the chunking."""
    params = _net_params(key, 4, 3)
    f = partial(_net, params)
    x = jnp.ones(4)
    draws = estimator_samples(
        f, x, method="projection", key=key, num_draws=6, num_projections=2, chunk=4
    )
    expected = jax.jit(
        jax.vmap(
            lambda k: jacobian_frobenius_sq(
                f, x, method="projection", key=k, num_projections=2
            )
        )
    )(jax.random.split(key, 6))
    chex.assert_trees_all_close(draws, expected, rtol=RTOL_F32)


def test_defaults_are_exact_and_integer_inputs_are_promoted():
    w = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert jacobian_frobenius_sq(lambda x: w @ x, jnp.ones(2, jnp.int32)) == 30.0
    assert jacobian_penalty(lambda p, x: x @ p, w, jnp.ones((3, 2))) == 30.0


@pytest.mark.parametrize("activation", (jnp.tanh, activations.elu), ids=("tanh", "elu"))
def test_mean_penalty_grad_closed_form_is_autodiff(x64, key, activation):
    """The batch mean of the closed form equals autodiff of the mean penalty."""
    params = _one_hidden_layer_params(key, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)

    @jax.jit  # one compiled program instead of many eager ops
    def grads(params, xs):
        closed, auto = (
            one_hidden_layer_mean_penalty_grad(
                params, xs, activation=activation, method=method
            )
            for method in ("closed_form", "autodiff")
        )
        per_example = [
            one_hidden_layer_penalty_grad(params, x, activation=activation)[1]
            for x in xs
        ]
        return closed, auto, jax.tree.map(lambda *g: sum(g) / len(g), *per_example)

    closed, auto, mean = grads(params, xs)
    chex.assert_trees_all_close(closed, auto, rtol=RTOL_F64, atol=RTOL_F64)
    chex.assert_trees_all_close(closed, mean, rtol=RTOL_F64)
    assert not jnp.any(closed.b2)


@pytest.mark.parametrize("activation", (jnp.tanh, activations.elu), ids=("tanh", "elu"))
def test_grad_errors_of_the_closed_form_are_round_off(x64, key, activation):
    params = _one_hidden_layer_params(key, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
    errors = one_hidden_layer_grad_errors(params, xs, activation=activation)
    assert json.loads(json.dumps(errors)) == errors
    assert list(errors["relative_error"]) == ["w1", "b1", "w2"]
    assert errors["max_relative_error"] == max(errors["relative_error"].values())
    assert errors["max_relative_error"] < RTOL_F64
    assert errors["b2_max_abs"] == 0.0


def test_grad_errors_measure_a_wrong_closed_form(x64, key, monkeypatch):
    """Doubling the closed form's dR/dw2 shows as a relative error of exactly 1."""
    exact = one_hidden_layer_penalty_grad

    def doubled_w2(params, x, **options):
        r, grads = exact(params, x, **options)
        return r, grads._replace(w2=2 * grads.w2)

    monkeypatch.setattr(regularizers, "one_hidden_layer_penalty_grad", doubled_w2)
    params = _one_hidden_layer_params(key, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
    errors = one_hidden_layer_grad_errors(params, xs)["relative_error"]
    np.testing.assert_allclose(errors["w2"], 1.0, rtol=RTOL_F64)
    assert errors["w1"] < RTOL_F64 and errors["b1"] < RTOL_F64


@pytest.mark.parametrize("method", ESTIMATORS)
def test_penalty_relative_std_is_the_spread_of_batch_estimates(x64, key, method):
    """The closed form against the sample std of many jacobian_penalty estimates."""
    params = _net_params(key, 6, 4, dtype=jnp.float64)

    def apply(p, x):
        return jax.vmap(partial(_net, p))(x)

    x = jax.random.normal(jax.random.key(1), (3, 6), jnp.float64)
    draws = jax.jit(
        jax.vmap(lambda k: jacobian_penalty(apply, params, x, method=method, key=k))
    )(jax.random.split(jax.random.key(2), N_KEYS))
    exact = jacobian_penalty(apply, params, x)
    predicted = penalty_relative_std(apply, params, x, method=method)
    np.testing.assert_allclose(
        jnp.std(draws) / exact, predicted, rtol=VARIANCE_RTOL / 2
    )
    assert penalty_relative_std(apply, params, x, method="exact") == 0


def test_estimator_study_summary_is_plain_data(key):
    w = jax.random.normal(key, (3, 4))
    study = estimator_study(
        lambda x: w @ x,
        jnp.ones((2, 4)),
        method="forward_projection",
        key=key,
        num_draws=50,
        num_projections=(1, 2),
    )
    summary = study.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["num_projections"] == [1, 2]
    assert summary["max_z"] == float(jnp.max(study.z_score))
    assert summary["log_log_slope"] == study.log_log_slope()
    np.testing.assert_allclose(summary["relative_variance"], study.relative_variance())
    single = study._replace(num_projections=(1,))
    assert "log_log_slope" not in single.summary()


# (method, ad_mode) pairs: the exact method in both modes, and both estimators.
PROBE_PASSES = [
    ("exact", "forward"),
    ("exact", "reverse"),
    ("projection", "auto"),
    ("forward_projection", "auto"),
]
PASS_IDS = ["exact-forward", "exact-reverse", "projection", "forward_projection"]


@pytest.mark.parametrize("method, ad_mode", PROBE_PASSES, ids=PASS_IDS)
def test_chunks_give_the_unchunked_penalty_and_gradients(key, method, ad_mode):
    """All probes at once, one per pass, and uneven chunks (padded with zero probes)
    agree to float32 rounding, values and parameter gradients; the exact method
    matches brute force."""
    model = _TinyMLP()  # D = 4 inputs, C = 3 outputs
    x = jax.random.normal(key, (6, 4))
    params = model.init(key, x)
    options = {"method": method, "ad_mode": ad_mode, "num_projections": 3}

    @jax.jit
    def penalties(p):
        return [
            jax.value_and_grad(
                lambda p, chunk=chunk: jacobian_penalty(
                    model.apply, p, x, key=key, chunk=chunk, **options
                )
            )(p)
            for chunk in (None, 1, 2)
        ]

    (value, grads), *chunked = penalties(params)
    for chunk_value, chunk_grads in chunked:
        np.testing.assert_allclose(chunk_value, value, rtol=RTOL_F32)
        chex.assert_trees_all_close(
            chunk_grads, grads, rtol=GRAD_RTOL_F32, atol=GRAD_RTOL_F32
        )
    if method == "exact":
        brute = jax.vmap(lambda xi: _brute_force(partial(model.apply, params), xi))
        np.testing.assert_allclose(value, jnp.mean(brute(x)), rtol=RTOL_F32)


@pytest.mark.parametrize("ad_mode", ["forward", "reverse"])
def test_grouped_and_batched_linearisations_agree(key, ad_mode, monkeypatch):
    """The exact method linearised per group of 2 examples (3 groups) and as one
    batch of 6: same values and parameter gradients."""
    model = _TinyMLP()
    x = jax.random.normal(key, (6, 4))
    params = model.init(key, x)
    f = partial(model.apply, params)
    out = jax.eval_shape(f, x)
    results = []
    for gain, group in ((0.0, 2), (math.inf, 6)):
        monkeypatch.setattr(regularizers, "GROUPING_GAIN", gain)
        assert regularizers._exact_plan(f, x, out, ad_mode, None).group == group
        results.append(
            jax.jit(
                jax.value_and_grad(
                    lambda p: jacobian_penalty(model.apply, p, x, ad_mode=ad_mode)
                )
            )(params)
        )
    (grouped, grouped_grads), (batched, batched_grads) = results
    np.testing.assert_allclose(grouped, batched, rtol=RTOL_F32)
    chex.assert_trees_all_close(
        grouped_grads, batched_grads, rtol=GRAD_RTOL_F32, atol=GRAD_RTOL_F32
    )


@pytest.mark.parametrize("ad_mode", ["forward", "reverse"])
def test_chunked_exact_gradients_match_finite_differences(x64, key, ad_mode):
    """The scan over rematerialised chunks against float64 central differences."""
    params = _net_params(key, 5, 4, dtype=jnp.float64)

    def apply(p, x):
        return jax.vmap(partial(_net, p))(x)

    x = jax.random.normal(jax.random.key(1), (4, 5), jnp.float64)

    @jax.jit
    def penalty(*p):
        return jacobian_penalty(apply, p, x, ad_mode=ad_mode, chunk=2)

    check_grads(penalty, params, order=1, modes=["rev"], atol=FD_TOL, rtol=FD_TOL)


def test_auto_chunks_scan_when_the_probes_are_many(key, monkeypatch):
    """chunk="auto" keeps about VALUES_PER_PASS intermediate values per pass: with a
    tiny budget the probes go through a lax.scan, with the same result."""
    model = _TinyMLP()
    x = jax.random.normal(key, (6, 4))
    params = model.init(key, x)

    def penalty(chunk):
        return jacobian_penalty(
            model.apply,
            params,
            x,
            method="projection",
            key=key,
            num_projections=8,
            chunk=chunk,
        )

    assert "scan" not in str(jax.make_jaxpr(lambda: penalty("auto"))())
    monkeypatch.setattr(regularizers, "VALUES_PER_PASS", 1)
    assert "scan" in str(jax.make_jaxpr(lambda: penalty("auto"))())
    np.testing.assert_allclose(penalty("auto"), penalty(None), rtol=RTOL_F32)


def test_exact_mode_follows_the_cost_model():
    """Reverse mode for few outputs, forward mode for many; at C = D reverse mode
    wins by the measured cost of forward-mode work (FORWARD_MODE_COST > 1)."""
    x = jnp.zeros((8, 16))
    modes = {}
    for outputs in (4, 16, 64):
        model = MLP((32, outputs))
        params = model.init(jax.random.key(0), x)
        modes[outputs] = exact_mode(model.apply, params, x)
    assert modes == {4: "reverse", 16: "reverse", 64: "forward"}
    assert regularizers.FORWARD_MODE_COST > 1


def test_exact_mode_avoids_a_mode_the_function_lacks():
    """A while loop has no VJP: with fewer outputs than inputs, where the cost model
    would take reverse mode, the exact method runs in forward mode."""

    def apply(p, x):  # (B, 3) -> (B, 1)
        def body(carry):
            i, y = carry
            return i + 1, jnp.sin(y)

        _, y = jax.lax.while_loop(lambda c: c[0] < p, body, (0, x))
        return jnp.sum(y, axis=1, keepdims=True)

    x = jnp.ones((4, 3))
    assert exact_mode(apply, 2, x) == "forward"
    expected = 3 * jnp.cos(jnp.sin(1.0)) ** 2 * jnp.cos(1.0) ** 2
    np.testing.assert_allclose(jacobian_penalty(apply, 2, x), expected, rtol=RTOL_F32)


def test_raw_and_typed_threefry_keys_draw_the_same_probes(key):
    """Both key forms of one seed draw the same projection (as Philox keys); keys of
    other generators are used as they are."""
    w = jax.random.normal(key, (3, 4))
    x = jnp.ones(4)

    def estimate(k):
        return jacobian_frobenius_sq(
            lambda x: w @ x, x, method="projection", key=k, num_projections=2
        )

    typed, raw = estimate(jax.random.key(3)), estimate(jax.random.PRNGKey(3))
    np.testing.assert_allclose(typed, raw, rtol=RTOL_F32)
    assert jnp.isfinite(estimate(jax.random.key(3, impl="rbg")))


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"method": "projection", "ad_mode": "reverse"}, ValueError, "ad_mode applies"),
        ({"ad_mode": "backward"}, ValueError, "ad_mode must be one of"),
        ({"chunk": 0}, ValueError, "chunk must be an integer >= 1"),
        ({"chunk": "all"}, ValueError, "chunk must be 'auto', None or an integer"),
        ({"chunk": 2.0}, TypeError, "chunk must be an integer"),
    ],
    ids=["ad_mode-with-estimator", "ad_mode", "chunk-0", "chunk-str", "chunk-float"],
)
def test_probe_options_are_checked(key, options, error, match):
    w = jnp.eye(2)
    with pytest.raises(error, match=match):
        jacobian_penalty(lambda p, x: x @ p, w, jnp.ones((3, 2)), key=key, **options)
    with pytest.raises(error, match=match):
        with_jacobian_penalty(
            lambda *a: 0.0, lambda p, x: x @ p, strength=1.0, **options
        )

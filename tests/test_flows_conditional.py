"""Masked autoregressive flows and conditional flows.

MADE's masks make ``out_i`` depend on ``x_{<i}`` and the context only (the Jacobian is
strictly lower triangular, and full below the diagonal); a masked autoregressive
layer's Jacobian is lower triangular. A conditional MAF fitted to a conditional
Gaussian matches its known density ``p(x | c)``; every builder takes a context; bad
contexts are refused. The bijection invariants run in ``test_flows.py``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from chainlab import flows

DIM, CONTEXT_DIM = 4, 2
# Conditional Gaussian fit: the mean of log p_true - log p_model over test points
# estimates E_c KL(p(. | c) || model(. | c)); 500 steps of a small MAF reach ~0.01.
TRAIN_STEPS = 500
KL_TOL = 0.05
# Sample moments of 4000 draws: standard errors about 0.012 (mean) and 0.009 (std).
MOMENT_TOL = 0.06


def _perturbed(params, key, scale=0.5):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


def test_made_output_sees_only_earlier_entries_and_the_context(key, x64):
    net = flows.made_conditioner(
        DIM, (6, 6), activation=jnp.tanh, outputs=2, context_dim=CONTEXT_DIM
    )
    k_params, k_x, k_c = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (DIM,))
    context = jax.random.normal(k_c, (CONTEXT_DIM,))

    @jax.jit
    def jacobians(key):
        params = _perturbed(net.init(key), key)

        def out(x, c):  # (DIM, outputs)
            return net.apply(params, x[None], c[None])[0]

        return jax.jacfwd(out, argnums=(0, 1))(x, context)

    wrt_x, wrt_context = jacobians(k_params)  # (DIM, 2, DIM), (DIM, 2, CONTEXT_DIM)
    depends = np.asarray(jnp.any(wrt_x != 0, axis=1))
    np.testing.assert_array_equal(depends, np.tril(np.ones((DIM, DIM)), k=-1))
    assert jnp.all(wrt_context != 0)  # the first entry too


def test_autoregressive_layer_jacobian_is_lower_triangular(key, x64):
    layer = flows.masked_autoregressive(
        DIM, hidden=(8,), activation=jnp.tanh, context_dim=CONTEXT_DIM
    )
    x = jax.random.normal(key, (DIM,))
    context = jnp.array([0.3, -0.8])

    @jax.jit
    def jacobian(key):
        params = _perturbed(layer.init(key), key)
        forward = lambda v: layer.forward(params, v[None], context[None])[0][0]  # noqa: E731
        return jax.jacfwd(forward)(x)

    jac = np.asarray(jacobian(key))
    np.testing.assert_array_equal(np.triu(jac, k=1), 0.0)
    assert np.all(np.diag(jac) > 0)
    assert np.all(jac[np.tril_indices(DIM, k=-1)] != 0)


def _conditional_gaussian(key, n):
    """``c ~ U[-1, 1]``, ``x_0 | c ~ N(1.5 c, (0.6 + 0.3 c)^2)``,
    ``x_1 | x_0, c ~ N(0.5 x_0 - c, 0.4^2)``, with the exact ``log p(x | c)``."""
    k_c, k_e = jax.random.split(key)
    c = jax.random.uniform(k_c, (n, 1), minval=-1.0, maxval=1.0)
    e = jax.random.normal(k_e, (n, 2))
    sd0 = 0.6 + 0.3 * c[:, 0]
    x0 = 1.5 * c[:, 0] + sd0 * e[:, 0]
    x1 = 0.5 * x0 - c[:, 0] + 0.4 * e[:, 1]
    log_p = (
        -0.5 * (e[:, 0] ** 2 + e[:, 1] ** 2)
        - jnp.log(sd0)
        - math.log(0.4)
        - math.log(2 * math.pi)
    )
    return jnp.stack([x0, x1], axis=1), c, log_p


def test_conditional_maf_learns_a_conditional_gaussian(key):
    flow = flows.maf(2, num_layers=2, hidden=(16, 16), context_dim=1)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def train_and_score(key):
        k_init, k_train, k_test, k_sample = jax.random.split(key, 4)
        params = flow.init(k_init)

        def step(carry, k):
            params, state = carry
            x, c, _ = _conditional_gaussian(k, 256)
            grads = jax.grad(lambda p: -jnp.mean(flow.log_prob(p, x, c)))(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        keys = jax.random.split(k_train, TRAIN_STEPS)
        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), keys)
        x, c, log_p = _conditional_gaussian(k_test, 4000)
        kl = jnp.mean(log_p - flow.log_prob(params, x, c))
        kl_wrong_context = jnp.mean(log_p - flow.log_prob(params, x, c[::-1]))
        samples = flow.sample(params, k_sample, 4000, jnp.array([0.5]))
        return kl, kl_wrong_context, samples

    kl, kl_wrong_context, samples = train_and_score(key)
    assert -KL_TOL < float(kl) < KL_TOL
    assert float(kl_wrong_context) > 1.0  # the fit uses the context
    # At c = 0.5: x_0 ~ N(0.75, 0.75^2), x_1 ~ N(-0.125, 0.375^2 + 0.4^2).
    np.testing.assert_allclose(jnp.mean(samples, 0), [0.75, -0.125], atol=MOMENT_TOL)
    expected_std = [0.75, math.sqrt(0.375**2 + 0.16)]
    np.testing.assert_allclose(jnp.std(samples, 0), expected_std, atol=MOMENT_TOL)


def test_conditional_spline_flow_moves_with_its_context(key):
    """In one program: the inverse given the same contexts undoes the forward, the
    density moves with the context, and ``sample`` takes one context vector for the
    whole batch. (The conditional affine couplings share this code path: the
    coupling and its conditioner; ``test_flows_spline.py`` runs the traced-mask
    path with a context.)"""
    flow = flows.neural_spline_flow(
        DIM, num_layers=2, hidden=(8,), bins=4, context_dim=CONTEXT_DIM
    )
    contexts = jnp.array([[1.0, -0.5], [-1.0, 2.0], [0.0, 0.3]])
    x = jax.random.normal(key, (3, DIM))

    @jax.jit
    def check(key):
        params = _perturbed(flow.init(key), key, scale=0.2)
        z, logdet = flow.forward(params, x, contexts)
        x_back, logdet_back = flow.inverse(params, z, contexts)
        _, logdet_swapped = flow.forward(params, x, contexts[::-1])
        samples = flow.sample(params, key, 3, contexts[0])
        return x_back, logdet, logdet_back, logdet_swapped, samples

    x_back, logdet, logdet_back, logdet_swapped, samples = check(key)
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    np.testing.assert_allclose(logdet, -logdet_back, atol=1e-4)
    assert float(jnp.max(jnp.abs(logdet_swapped - logdet))) > 1e-3
    assert samples.shape == x.shape and jnp.all(jnp.isfinite(samples))


def test_glow_hands_the_context_to_every_conditioner(key):
    """A conditional glow: every convolutional conditioner (the steps' and the split
    prior's) has the context among its first layer's inputs (shapes only, nothing
    compiled), and a convolutional conditioner's output moves with the context."""
    flow = flows.glow((4, 4, 1), levels=2, steps=1, hidden=4, context_dim=CONTEXT_DIM)
    shapes = jax.eval_shape(flow.init, key)
    first_layer = (jax.tree_util.DictKey("net"), jax.tree_util.SequenceKey(0))
    inputs = [
        leaf.shape[-2]  # the kernels' input channels (after any stacked layer axis)
        for path, leaf in jax.tree.leaves_with_path(shapes)
        if path[-3:-1] == first_layer and path[-1] == jax.tree_util.DictKey("w")
    ]
    # Scale 1 (its step and the split prior): 4 channels; scale 2: 8 channels.
    assert sorted(inputs) == [4 + CONTEXT_DIM] * 2 + [8 + CONTEXT_DIM]

    net = flows.conv_conditioner(2, 4, context_dim=CONTEXT_DIM)
    x = jax.random.normal(key, (1, 4, 4, 2))

    @jax.jit
    def outputs(key, contexts):
        params = _perturbed(net.init(key), key)
        return [net.apply(params, x, c[None]) for c in contexts]

    first, second = outputs(key, jnp.array([[1.0, -0.5], [-1.0, 2.0]]))
    assert first.shape == (1, 4, 4, 2, 2)
    assert float(jnp.max(jnp.abs(first - second))) > 1e-3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: flows.realnvp(2).log_prob(None, jnp.zeros((3, 2)), jnp.zeros(1)),
            "flow is unconditional",
        ),
        (
            lambda: flows.maf(2, context_dim=1).log_prob(None, jnp.zeros((3, 2))),
            r"flow is conditional: pass a context of shape \(n, 1\)",
        ),
        (
            lambda: flows.maf(2, context_dim=2).log_prob(
                None, jnp.zeros((3, 2)), jnp.zeros((4, 2))
            ),
            r"flow context must have shape \(3, 2\)",
        ),
        (
            lambda: flows.transformed(
                flows.masked_autoregressive(2, context_dim=1), (2,)
            ),
            "the bijection is conditional: context_dim must be > 0",
        ),
        (
            lambda: flows.made_conditioner(4, (2,)),
            "hidden widths must be an integer >= 3",
        ),
        (
            lambda: flows.maf(2, transformer="planar"),
            "transformer must be one of",
        ),
    ],
)
def test_bad_contexts_and_settings_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()

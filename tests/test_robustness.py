"""Tests for chainlab.robustness: known answers on linear models, one compile per loop.

For a linear two-class score ``z = x @ W + b`` the input gradient of the cross-entropy
of class y is ``p_other (w_other - w_y)``, so the worst perturbation of size epsilon is
known in closed form: ``epsilon * sign(w_other - w_y)`` in L-inf, ``epsilon * (w_other
- w_y) / ||w_other - w_y||_2`` in L2, and the margin ``z_y - z_other`` shrinks by
exactly ``epsilon ||w_y - w_other||_1`` or ``epsilon ||w_y - w_other||_2``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab import robustness

# float32 sums of a handful of products.
RTOL = 1e-5
# Monte Carlo accuracy of 4000 Bernoulli draws: standard error below 0.008.
MC_ATOL = 0.035
DIM = 5
EPSILON = 0.3


def linear_apply(params, x):
    """Logits of a linear classifier, weights (in, out) as in Flax."""
    w, b = params
    return x @ w + b[None, :]


@pytest.fixture(scope="module")
def binary():
    """Two classes, eight examples, labels 0 and 1 alternating."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    w = jax.random.normal(k1, (DIM, 2))
    b = 0.1 * jax.random.normal(k2, (2,))
    x = jax.random.normal(k3, (8, DIM))
    y = jnp.arange(8) % 2
    return (w, b), x, y


def _difference(params, y):
    """w_other - w_y per example, (B, D): the direction that lowers the margin."""
    w, _ = params
    d = w[:, 1] - w[:, 0]
    return jnp.where((y == 0)[:, None], d[None, :], -d[None, :])


def _margin(params, x, y):
    """z_y - z_other per example."""
    z = linear_apply(params, x)
    return jnp.where(y == 0, z[:, 0] - z[:, 1], z[:, 1] - z[:, 0])


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", robustness.NORMS)
def test_attack_on_a_linear_model_is_the_closed_form(binary, attack, norm):
    params, x, y = binary
    d = _difference(params, y)
    if norm == "linf":
        step, shrink = jnp.sign(d), jnp.sum(jnp.abs(d), axis=1)
    else:
        length = jnp.linalg.norm(d, axis=1)
        step, shrink = d / length[:, None], length
    options = {"steps": 7} if attack == "pgd" else {}
    x_adv = getattr(robustness, attack)(
        linear_apply, params, x, y, epsilon=EPSILON, norm=norm, **options
    )
    chex.assert_trees_all_close(x_adv, x + EPSILON * step, rtol=RTOL, atol=RTOL)
    chex.assert_trees_all_close(
        _margin(params, x_adv, y),
        _margin(params, x, y) - EPSILON * shrink,
        rtol=RTOL,
        atol=RTOL,
    )


def test_accuracy_under_attack_counts_margins_above_the_shrink(binary):
    params, x, y = binary
    shrink = jnp.sum(jnp.abs(_difference(params, y)), axis=1)
    expected = jnp.mean(_margin(params, x, y) > EPSILON * shrink)
    x_adv = robustness.fgsm(linear_apply, params, x, y, epsilon=EPSILON)
    assert robustness.accuracy(linear_apply, params, x_adv, y) == expected
    clean = jnp.mean(_margin(params, x, y) > 0)
    assert robustness.accuracy(linear_apply, params, x, y) == clean


def test_pgd_stays_in_the_ball_and_the_bounds():
    """A multiclass MLP: iterates within epsilon of x (both norms) and in [0, 1]."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    params = (jax.random.normal(k1, (DIM, 16)), jax.random.normal(k2, (16, 4)))

    def apply(p, x):
        return jnp.tanh(x @ p[0]) @ p[1]

    x = jax.random.uniform(k3, (6, DIM))
    y = jnp.arange(6) % 4
    for norm, order in (("linf", np.inf), ("l2", 2)):
        x_adv = robustness.pgd(
            apply, params, x, y, epsilon=0.2, steps=5, norm=norm, bounds=(0.0, 1.0)
        )
        assert np.all(np.linalg.norm(x_adv - x, ord=order, axis=1) <= 0.2 + 1e-6)
        assert jnp.all((x_adv >= 0) & (x_adv <= 1))
        loss = robustness.accuracy(apply, params, x_adv, y)
        assert loss <= robustness.accuracy(apply, params, x, y)


def test_zero_epsilon_leaves_the_inputs(binary):
    params, x, y = binary
    for attack in (robustness.fgsm, robustness.pgd):
        options = {"steps": 3} if attack is robustness.pgd else {}
        x_adv = attack(linear_apply, params, x, y, epsilon=0.0, **options)
        chex.assert_trees_all_close(x_adv, x)


def test_noise_accuracy_matches_the_gaussian_margin_law(binary):
    """Margin m + sigma <d, u> ~ N(m, sigma^2 ||d||^2): P(correct) = Phi(m / ...)."""
    params, x, y = binary
    x, y = jnp.repeat(x, 125, axis=0), jnp.repeat(y, 125)
    sigma = 0.5
    scale = sigma * jnp.linalg.norm(_difference(params, y), axis=1)
    expected = jnp.mean(jax.scipy.special.ndtr(_margin(params, x, y) / scale))
    measured = robustness.noise_accuracy(
        linear_apply, params, x, y, sigma=sigma, key=jax.random.key(2), draws=4
    )
    assert abs(float(measured) - expected) < MC_ATOL
    clean = robustness.noise_accuracy(
        linear_apply, params, x, y, sigma=0.0, key=jax.random.key(2)
    )
    assert clean == robustness.accuracy(linear_apply, params, x, y)


def test_a_sweep_over_epsilon_compiles_each_attack_once(binary):
    """epsilon, sigma and step_size are traced: apply is traced once per program."""
    params, x, y = binary

    @chex.assert_max_traces(n=3)
    def apply(p, z):
        return linear_apply(p, z)

    for epsilon in (0.0, 0.1, 0.2, 0.3):
        robustness.fgsm(apply, params, x, y, epsilon=epsilon, bounds=(-3.0, 3.0))
        robustness.pgd(apply, params, x, y, epsilon=epsilon, steps=4)
        robustness.noise_accuracy(
            apply, params, x, y, sigma=epsilon, key=jax.random.key(0), draws=2
        )


def test_sensitivity_of_a_linear_model_is_its_weights(binary):
    """J = W^T for every example; grad_x CE = W (softmax - onehot)."""
    params, x, y = binary
    w, _ = params
    s = robustness.sensitivity(linear_apply, params, x, y)
    np.testing.assert_allclose(s["jacobian_frobenius"], jnp.linalg.norm(w), rtol=RTOL)
    p = jax.nn.softmax(linear_apply(params, x))
    grads = (p - jax.nn.one_hot(y, p.shape[1])) @ w.T
    expected = jnp.mean(jnp.linalg.norm(grads, axis=1))
    np.testing.assert_allclose(s["input_gradient_norm"], expected, rtol=RTOL)


def test_evaluate_gathers_accuracy_sensitivity_and_curves(binary):
    """On the linear model every entry has its closed form; zero sizes are clean."""
    params, x, y = binary
    result = robustness.evaluate(
        linear_apply,
        params,
        x,
        y,
        sigmas=(0.0, 0.5),
        epsilons=(0.0, EPSILON),
        key=jax.random.key(3),
        draws=2,
        pgd_steps=3,
    )
    assert set(result) == {
        "accuracy",
        "jacobian_frobenius",
        "input_gradient_norm",
        "gaussian",
        "fgsm",
        "pgd",
    }
    clean = float(jnp.mean(_margin(params, x, y) > 0))
    shrink = jnp.sum(jnp.abs(_difference(params, y)), axis=1)
    attacked = float(jnp.mean(_margin(params, x, y) > EPSILON * shrink))
    assert result["accuracy"] == clean
    np.testing.assert_allclose(
        result["jacobian_frobenius"], jnp.linalg.norm(params[0]), rtol=RTOL
    )
    assert result["gaussian"][0] == result["fgsm"][0] == result["pgd"][0] == clean
    assert result["fgsm"][1] == attacked
    assert all(isinstance(v, float) for v in jax.tree.leaves(result))

"""Tests for chainlab.science.hamiltonian_network (Greydanus et al. 2019)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from chainlab.models import MLP
from chainlab.science.hamiltonian_network import field_loss, hamiltonian_field, rollout
from chainlab.science.mechanics import vector_field
from chainlab.science.systems import harmonic_flow, spring
from chainlab.training import fit

STATES = np.array([[1.0, 0.5], [-0.3, 0.8], [0.0, -1.0]])


def scaled_spring(w, states):
    """A 'network' whose energy is w (q^2 + p^2): the spring at w = 1, shape (b, 1)."""
    return w * jnp.sum(states**2, axis=-1, keepdims=True)


def test_field_of_a_known_energy_is_hamiltons_equations():
    field = hamiltonian_field(scaled_spring)
    expected = jnp.stack(
        [jnp.stack(vector_field(spring, q, p, 0.0)) for q, p in STATES]
    )
    chex.assert_trees_all_close(field(1.0, STATES), expected, atol=1e-6)
    # A (batch,) energy gives the same field.
    flat = hamiltonian_field(lambda w, x: scaled_spring(w, x)[:, 0])
    chex.assert_trees_all_close(flat(1.0, STATES), expected, atol=1e-6)


def test_loss_is_zero_on_exact_derivatives_and_the_mean_square_otherwise():
    field = hamiltonian_field(scaled_spring)
    derivatives = field(1.0, STATES)
    loss = field_loss(field)
    assert float(loss(1.0, (STATES, derivatives), None)) == 0.0
    # At w = 2 the field doubles: the error is the field itself.
    np.testing.assert_allclose(
        loss(2.0, (STATES, derivatives), None), jnp.mean(derivatives**2), rtol=1e-6
    )


def test_rollout_of_the_exact_field_follows_the_exact_flow(x64):
    field = hamiltonian_field(scaled_spring)
    path = rollout(field, 1.0, STATES, dt=0.01, steps=300)
    assert path.shape == (3, 301, 2)
    q, p = harmonic_flow(
        STATES[:, None, 0],
        STATES[:, None, 1],
        0.01 * jnp.arange(301)[None, :],
        frequency=2.0,
    )
    chex.assert_trees_all_close(path, jnp.stack([q, p], axis=-1), atol=1e-8)


def test_training_through_fit_traces_once_and_learns_the_spring(tmp_path):
    """A small HNN fitted to exact spring derivatives: loss falls, one trace."""
    rng = np.random.default_rng(0)
    states = rng.uniform(-1.0, 1.0, size=(64, 2)).astype(np.float32)
    derivatives = np.stack([2 * states[:, 1], -2 * states[:, 0]], axis=-1)
    model = MLP((32, 1))
    params = model.init(jax.random.key(0), states[:1])
    field = hamiltonian_field(model.apply)
    loss_fn = field_loss(field)
    initial = float(loss_fn(params, (states, derivatives), None))
    traced = chex.assert_max_traces(loss_fn, n=1)
    fitted = fit(
        traced,
        params,
        optax.adam(1e-2),
        (states, derivatives),
        steps=100,
        batch_size=32,
        log_every=100,
        metrics_path=tmp_path / "metrics.jsonl",
    ).params
    assert float(loss_fn(fitted, (states, derivatives), None)) < initial / 20
    # The rollout of the learned field conserves the learned energy (RK4 error only).
    path = rollout(field, fitted, states[:4], dt=0.01, steps=50)
    energies = model.apply(fitted, path.reshape(-1, 2)).reshape(4, 51)
    np.testing.assert_allclose(energies, energies[:, :1] + 0 * energies, atol=1e-4)


def test_apply_must_return_one_energy_per_state():
    field = hamiltonian_field(lambda w, x: w * x)
    with pytest.raises(ValueError, match="one energy per state"):
        field(1.0, STATES)

"""Hamiltonian neural networks: a vector field from a learned scalar energy.

A Hamiltonian neural network (Greydanus, Dzamba and Yosinski, *Hamiltonian Neural
Networks*, NeurIPS 2019) learns a scalar H_theta(q, p) and moves along Hamilton's
equations of it,

    dq/dt = dH_theta/dp,   dp/dt = -dH_theta/dq,

with both derivatives from one reverse pass. By the chain rule (see
``chainlab.science.mechanics``) the flow of such a field conserves H_theta exactly,
whatever theta is, so its rollouts cannot drift in energy the way a network that
outputs (dq/dt, dp/dt) directly does. It is trained like that plain network: by the
squared error of its field against observed time derivatives.

The model convention is the library's batch convention: ``apply(params, states)`` is a
Flax linen ``module.apply``, or for Flax NNX ``graphdef, state = nnx.split(model)`` with
``lambda s, x: nnx.merge(graphdef, s)(x)``. ``states`` are ``(batch, 2 n)``, positions
then momenta, ``concat(q, p)``. A *field* ``field(params, states) -> (batch, 2 n)`` is
either a plain network's ``apply`` or ``hamiltonian_field(apply)``; ``field_loss``
trains either through :func:`chainlab.training.fit` and ``rollout`` integrates either.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.science.mechanics import odeint
from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_positive,
    check_rank,
    check_shape,
)

__all__ = ["field_loss", "hamiltonian_field", "rollout"]

Params = Any
Apply = Callable[[Params, jax.Array], jax.Array]
Field = Callable[[Params, jax.Array], jax.Array]


def _validate_states(states: jax.Array) -> None:
    check_rank("states", states, 2)
    if states.shape[-1] % 2:
        raise ValueError(
            f"states must be (batch, 2 n), positions then momenta, got shape "
            f"{states.shape}"
        )


def hamiltonian_field(apply: Apply) -> Field:
    """The field (dH/dp, -dH/dq) of the learned energy H = ``apply(params, states)``.

    ``apply(params, states)`` maps ``(batch, 2 n)`` states to ``(batch,)`` or ``(batch,
    1)`` energies, each row from its own state (no batch statistics): then the gradient
    of the summed energy is every row's dH/d(q, p) in one reverse pass. The returned
    ``field(params, states)`` is ``(batch, 2 n)``: ``concat(dH/dp, -dH/dq)``.

    Example (H = |q|^2 + |p|^2 with a learnable scale: the ideal spring, q' = 2 p):

    >>> field = hamiltonian_field(lambda w, x: w * jnp.sum(x**2, axis=-1))
    >>> field(1.0, jnp.array([[1.0, 0.5]])).tolist()
    [[1.0, -2.0]]
    """

    def field(params: Params, states: ArrayLike) -> jax.Array:
        states = as_real_float("states", states)
        _validate_states(states)
        energies = jax.eval_shape(apply, params, states)
        if energies.shape not in {states.shape[:1], (states.shape[0], 1)}:
            raise ValueError(
                f"apply(params, states) must return one energy per state, shape "
                f"({states.shape[0]},) or ({states.shape[0]}, 1), got "
                f"{energies.shape}"
            )
        gradient = jax.grad(lambda s: jnp.sum(apply(params, s)))(states)
        dH_dq, dH_dp = jnp.split(gradient, 2, axis=-1)
        return jnp.concatenate([dH_dp, -dH_dq], axis=-1)

    return field


def field_loss(field: Field) -> Callable[[Params, tuple, Any], jax.Array]:
    """The loss of a field against observed time derivatives, as ``fit`` takes it.

    ``loss_fn(params, (states, derivatives), key) = mean (field(params, states) -
    derivatives)^2`` over the batch and the 2 n coordinates (Greydanus et al. 2019,
    eq. 2 for ``hamiltonian_field``; the same loss trains a plain network, whose field
    is its ``apply``).

    Example (the exact spring field has zero loss on exact derivatives):

    >>> loss = field_loss(hamiltonian_field(lambda w, x: w * jnp.sum(x**2, axis=-1)))
    >>> float(loss(1.0, (jnp.array([[1.0, 0.5]]), jnp.array([[1.0, -2.0]])), None))
    0.0
    """

    def loss_fn(params: Params, batch: tuple, key: Any) -> jax.Array:
        del key  # deterministic
        states, derivatives = batch
        predicted = field(params, states)
        check_shape("derivatives", derivatives, predicted.shape)
        return jnp.mean(jnp.square(predicted - derivatives))

    return loss_fn


def rollout(
    field: Field, params: Params, states: ArrayLike, *, dt: float, steps: int
) -> jax.Array:
    """Trajectories of ``field`` from each of ``states``, by RK4 (``mechanics.odeint``).

    Returns ``(batch, steps + 1, 2 n)``: row b is the trajectory from ``states[b]`` at
    times ``0, dt, ..., steps dt``. Compiled once per (field, shapes, steps): pass the
    same ``field`` object to reuse the program. ``steps >= 1`` always, ``dt > 0`` when
    concrete.

    Example (the spring's exact field turns (1, 0) by a quarter period, pi / 4):

    >>> field = hamiltonian_field(lambda w, x: w * jnp.sum(x**2, axis=-1))
    >>> path = rollout(field, 1.0, jnp.array([[1.0, 0.0]]), dt=jnp.pi / 400, steps=100)
    >>> path.shape, [round(float(v), 4) + 0.0 for v in path[0, -1]]
    ((1, 101, 2), [0.0, -1.0])
    """
    check_at_least("steps", steps, 1)
    check_positive("dt", dt)
    states = as_real_float("states", states)
    _validate_states(states)
    return _rollout(field, params, states, as_real_float("dt", dt), steps=steps)


@partial(jax.jit, static_argnames=("field", "steps"))
def _rollout(field, params, states, dt, *, steps):
    path = odeint(lambda y, t: field(params, y), states, dt=dt, steps=steps)
    return jnp.swapaxes(path, 0, 1)

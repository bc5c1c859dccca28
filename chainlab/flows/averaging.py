"""Polyak averaging carried in the parameters, so early stopping can select it.

An exponential moving average of the iterates (Polyak & Juditsky 1992, "Acceleration
of stochastic approximation by averaging"; Kingma & Dhariwal 2018, "Glow", use one for
evaluation) often scores better than the last iterate of a small, noisy data set.
Carried as ``params = {"live": tree, "average": tree}``, the average reaches
:func:`chainlab.training.fit`'s ``eval_fn`` and ``select_best`` like any parameter.
"""

import jax
import optax

from chainlab.validation import check_in_range

__all__ = ["with_average"]


def with_average(
    inner: optax.GradientTransformation, *, decay: float
) -> optax.GradientTransformation:
    """Train ``params["live"]`` with ``inner``; keep ``params["average"]`` its EMA.

    After each step, ``average <- decay * average + (1 - decay) * live``, an
    exponential window of about ``1 / (1 - decay)`` steps. The loss must read
    ``params["live"]`` only; the updates have the structure of ``params``.

    Args:
      inner: the optimizer of the live parameters.
      decay: in ``[0, 1)``; 0 makes the average the live parameters. Checked when
        concrete.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = with_average(optax.sgd(1.0), decay=0.5)
      >>> params = {"live": jnp.zeros(1), "average": jnp.zeros(1)}
      >>> updates, _ = opt.update({"live": jnp.ones(1), "average": jnp.zeros(1)},
      ...                         opt.init(params), params)
      >>> optax.apply_updates(params, updates)["average"].tolist()
      [-0.5]
    """
    check_in_range("decay", decay, 0, 1)

    def init(params):
        return inner.init(params["live"])

    def update(grads, state, params):
        updates, state = inner.update(grads["live"], state, params["live"])
        live = optax.apply_updates(params["live"], updates)
        toward = jax.tree.map(
            lambda avg, new: (1 - decay) * (new - avg), params["average"], live
        )
        return {"live": updates, "average": toward}, state

    return optax.GradientTransformation(init, update)

"""Accuracy of a classifier under input noise and gradient attacks (FGSM, PGD).

Every function takes the training-time model convention ``apply(params, x_batch) ->
logits``: a Flax linen ``module.apply``, or for Flax NNX ``graphdef, state =
nnx.split(model)`` with ``lambda s, x: nnx.merge(graphdef, s)(x)``. ``apply`` must
treat the examples of a batch independently (no batch statistics), so that the
gradient of the summed loss is every example's own input gradient. Labels ``y`` are
integer classes; the attacked loss is :func:`chainlab.losses.cross_entropy`.

For a perturbation ``delta`` of size ``||delta|| <= epsilon`` the first-order change
of the loss is ``<g, delta>`` with ``g = grad_x loss``; its maximiser is the dual-norm
direction, ``epsilon * sign(g)`` in L-inf and ``epsilon * g / ||g||_2`` in L2. For a
linear score ``z = x @ W + b`` this step is exact: the margin ``z_y - z_j`` between two
classes moves by exactly ``epsilon * ||w_y - w_j||_1`` (L-inf) or ``epsilon * ||w_y -
w_j||_2`` (L2) when they are the only two classes.

- :func:`fgsm`: one such step (Goodfellow, Shlens & Szegedy 2015; in L2 it is the
  "fast gradient method").
- :func:`pgd`: ``steps`` steps of size ``step_size`` (default ``2.5 epsilon /
  steps``), each followed by the projection onto the epsilon-ball around ``x`` and
  onto ``bounds`` (Madry et al. 2018), started at ``x`` itself (no random start).
- :func:`noise_accuracy`: accuracy on ``x + sigma * N(0, I)``, averaged over draws.
- :func:`accuracy`: the fraction of ``argmax apply(params, x) == y``.
- :func:`accuracy_curves`: all three accuracies over grids of sizes.
- :func:`sensitivity`: the first-order sizes these perturbations act through, mean
  ||J||_F (logits with respect to the input) and mean ||grad_x loss||_2.
- :func:`evaluate`: all of the above for one classifier, in one dict.

Each function checks its settings when they are concrete and then runs one jitted
program, compiled once per ``apply``, shapes and static options (``norm``, ``steps``,
``bounds``, ``draws``): ``epsilon``, ``sigma`` and ``step_size`` are traced, so a sweep
over them reuses the program. Passed as traced values (inside the caller's own
``jit``) the settings are not checked.

References: I. Goodfellow, J. Shlens, C. Szegedy, "Explaining and Harnessing
Adversarial Examples", ICLR 2015 (arXiv:1412.6572); A. Madry, A. Makelov, L. Schmidt,
D. Tsipras, A. Vladu, "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018 (arXiv:1706.06083).
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.losses import cross_entropy
from chainlab.regularizers import input_gradient_norm, jacobian_frobenius_sq
from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_dtype,
    check_finite,
    check_nonnegative,
    check_positive,
    check_rank,
    check_shape,
)

__all__ = [
    "NORMS",
    "accuracy",
    "accuracy_curves",
    "evaluate",
    "fgsm",
    "noise_accuracy",
    "pgd",
    "sensitivity",
]

Apply = Callable[[Any, jax.Array], jax.Array]
Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")


def _batch(x: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``x`` (B, ...) as a real float array and ``y`` (B,) integer labels."""
    x = as_real_float("x", x)
    if x.ndim < 1:
        raise ValueError(f"x must have a leading batch axis, got shape {x.shape}")
    y = jnp.asarray(y)
    check_dtype("y", y, jnp.integer)
    check_shape("y", y, (x.shape[0],))
    return x, y


def _scalar_setting(name: str, value: ArrayLike, *, positive: bool) -> jax.Array:
    check_rank(name, value, 0)
    (check_positive if positive else check_nonnegative)(name, value)
    check_finite(name, value)
    return jnp.asarray(value)


def _clip_range(bounds: Sequence[float] | None) -> tuple[float, float] | None:
    """``bounds`` as a hashable ``(low, high)`` (a static argument of the jit)."""
    if bounds is None:
        return None
    if not (len(bounds) == 2 and bounds[0] < bounds[1]):
        raise ValueError(
            f"bounds must be None or (low, high) with low < high, got {bounds!r}"
        )
    return float(bounds[0]), float(bounds[1])


def accuracy(apply: Apply, params: Any, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Fraction of examples whose largest logit is the label's, a float scalar.

    ``apply(params, x_batch) -> logits (B, C)`` (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])
      >>> float(accuracy(apply, jnp.eye(2), x, y))
      0.5
    """
    x, y = _batch(x, y)
    return _accuracy(apply, params, x, y)


@partial(jax.jit, static_argnums=0)
def _accuracy(apply, params, x, y):
    return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == y)


def noise_accuracy(
    apply: Apply,
    params: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    sigma: ArrayLike,
    key: jax.Array,
    draws: int = 1,
) -> jax.Array:
    """Accuracy on ``x + sigma * u``, ``u ~ N(0, I)``, averaged over ``draws`` draws.

    Every draw perturbs every example independently; nothing is clipped. ``sigma >=
    0`` (``sigma = 0`` is the clean accuracy). For a linear binary score with margin
    ``m`` and weight difference ``d`` the expected accuracy of an example is
    ``Phi(m / (sigma ||d||_2))``.

    Args:
      apply: ``apply(params, x_batch) -> logits`` (see the module docstring).
      params: the model's parameters.
      x: inputs ``(B, ...)``.
      y: integer labels ``(B,)``.
      sigma: noise standard deviation, a scalar ``>= 0`` (traced: one compile for a
        sweep).
      key: PRNG key of the noise.
      draws: independent noise draws averaged, ``>= 1``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> x, y = jnp.array([[1.0, 0.0]]), jnp.array([0])
      >>> float(noise_accuracy(apply, jnp.eye(2), x, y, sigma=0.0,
      ...                      key=jax.random.key(0)))
      1.0
    """
    x, y = _batch(x, y)
    sigma = _scalar_setting("sigma", sigma, positive=False)
    check_at_least("draws", draws, 1)
    return _noise_accuracy(apply, params, x, y, sigma, key, draws)


@partial(jax.jit, static_argnums=(0, 6))
def _noise_accuracy(apply, params, x, y, sigma, key, draws):
    def one(k):
        noise = jax.random.normal(k, x.shape, x.dtype)
        return _accuracy(apply, params, x + sigma * noise, y)

    return jnp.mean(jax.lax.map(one, jax.random.split(key, draws)))


def sensitivity(
    apply: Apply, params: Any, x: ArrayLike, y: ArrayLike
) -> dict[str, jax.Array]:
    """Means over examples of ||J||_F and of ||grad_x cross-entropy||_2.

    J is the Jacobian of example b's logits with respect to its input x_b
    (:func:`chainlab.regularizers.jacobian_frobenius_sq`, exact) and the gradient is
    that of its cross-entropy (:func:`chainlab.regularizers.input_gradient_norm`).
    Returns ``{"jacobian_frobenius": ..., "input_gradient_norm": ...}``, float
    scalars. ``apply(params, x_batch) -> logits`` as in the module docstring.

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w  # J = w^T, gradient 0 at equal logits
      >>> x, y = jnp.zeros((2, 2)), jnp.array([0, 1])
      >>> s = sensitivity(apply, 2 * jnp.eye(2), x, y)
      >>> round(float(s["jacobian_frobenius"]) ** 2, 4)
      8.0
      >>> round(float(s["input_gradient_norm"]) ** 2, 4)
      2.0
    """
    x, y = _batch(x, y)
    return _sensitivity(apply, params, x, y)


@partial(jax.jit, static_argnums=0)
def _sensitivity(apply, params, x, y):
    def one(xi, yi):
        def logits(z):
            return apply(params, z[None])[0]

        jacobian = jnp.sqrt(jacobian_frobenius_sq(logits, xi))
        gradient = input_gradient_norm(lambda z: cross_entropy(logits(z), yi), xi)
        return {"jacobian_frobenius": jacobian, "input_gradient_norm": gradient}

    return jax.tree.map(jnp.mean, jax.vmap(one)(x, y))


def _input_gradient(apply, params, x, y):
    """Every example's gradient of its cross-entropy with respect to its input."""
    return jax.grad(lambda z: jnp.sum(cross_entropy(apply(params, z), y)))(x)


def _steepest(g: jax.Array, norm: str) -> jax.Array:
    """The unit-norm ascent direction of each example: sign(g) or g / ||g||_2."""
    if norm == "linf":
        return jnp.sign(g)
    axes = tuple(range(1, g.ndim))
    length = jnp.sqrt(jnp.sum(jnp.square(g), axis=axes, keepdims=True))
    return g / jnp.maximum(length, jnp.finfo(g.dtype).tiny)


def _project(x_adv, x, epsilon, norm, bounds):
    """Onto the epsilon-ball of ``norm`` around ``x``, then into ``bounds``."""
    delta = x_adv - x
    if norm == "linf":
        delta = jnp.clip(delta, -epsilon, epsilon)
    else:
        axes = tuple(range(1, delta.ndim))
        length = jnp.sqrt(jnp.sum(jnp.square(delta), axis=axes, keepdims=True))
        delta = delta * jnp.minimum(1.0, epsilon / jnp.maximum(length, 1e-30))
    x_adv = x + delta
    return x_adv if bounds is None else jnp.clip(x_adv, *bounds)


def _attack_settings(x, y, epsilon, norm, bounds):
    x, y = _batch(x, y)
    check_choice("norm", norm, NORMS)
    epsilon = _scalar_setting("epsilon", epsilon, positive=False)
    return x, y, epsilon, _clip_range(bounds)


def fgsm(
    apply: Apply,
    params: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epsilon: ArrayLike,
    norm: Norm = "linf",
    bounds: tuple[float, float] | None = None,
) -> jax.Array:
    """Fast gradient sign method: ``x + epsilon * direction(grad_x loss)``.

    ``x_adv = x + epsilon * sign(g)`` for ``norm="linf"`` (Goodfellow et al. 2015) and
    ``x + epsilon * g / ||g||_2`` per example for ``norm="l2"``, with ``g`` the
    gradient of the example's cross-entropy with respect to its input; then clipped
    into ``bounds`` (e.g. ``(0.0, 1.0)`` for images), if given.

    Args:
      apply: ``apply(params, x_batch) -> logits`` (see the module docstring).
      params: the model's parameters.
      x: inputs ``(B, ...)``.
      y: integer labels ``(B,)``.
      epsilon: size of the perturbation, a scalar ``>= 0``.
      norm: ``"linf"`` or ``"l2"``.
      bounds: ``(low, high)`` the attacked inputs are clipped into, or ``None``.

    Returns:
      The attacked inputs, shaped like ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> w = jnp.array([[1.0, -1.0], [2.0, 0.0]])  # w_0 - w_1 = (2, 2)
      >>> x_adv = fgsm(apply, w, jnp.zeros((1, 2)), jnp.array([0]), epsilon=0.5)
      >>> x_adv.tolist()
      [[-0.5, -0.5]]
    """
    x, y, epsilon, bounds = _attack_settings(x, y, epsilon, norm, bounds)
    return _fgsm(apply, params, x, y, epsilon, norm, bounds)


@partial(jax.jit, static_argnums=(0, 5, 6))
def _fgsm(apply, params, x, y, epsilon, norm, bounds):
    x_adv = x + epsilon * _steepest(_input_gradient(apply, params, x, y), norm)
    return x_adv if bounds is None else jnp.clip(x_adv, *bounds)


def pgd(
    apply: Apply,
    params: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epsilon: ArrayLike,
    steps: int,
    step_size: ArrayLike | None = None,
    norm: Norm = "linf",
    bounds: tuple[float, float] | None = None,
) -> jax.Array:
    """Projected gradient ascent of the cross-entropy in the epsilon-ball around ``x``.

    From ``x_0 = x``: ``x_{k+1} = P(x_k + step_size * direction(grad_x loss(x_k)))``,
    where the direction is ``sign(g)`` (``"linf"``) or ``g / ||g||_2`` (``"l2"``) and
    ``P`` projects onto ``{||x' - x|| <= epsilon}`` and then into ``bounds``
    (Madry et al. 2018). The default ``step_size = 2.5 epsilon / steps`` lets the
    iterate cross the ball and still turn. The loop is one ``lax.fori_loop``: one
    trace of ``apply`` whatever ``steps`` is.

    Args:
      apply: ``apply(params, x_batch) -> logits`` (see the module docstring).
      params: the model's parameters.
      x: inputs ``(B, ...)``.
      y: integer labels ``(B,)``.
      epsilon: radius of the ball, a scalar ``>= 0``.
      steps: ascent steps, ``>= 1``.
      step_size: length of each step, a scalar ``> 0``; default ``2.5 epsilon /
        steps``.
      norm: ``"linf"`` or ``"l2"``.
      bounds: ``(low, high)`` the iterates are clipped into, or ``None``.

    Returns:
      The attacked inputs, shaped like ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> w = jnp.array([[1.0, -1.0], [2.0, 0.0]])
      >>> x_adv = pgd(apply, w, jnp.zeros((1, 2)), jnp.array([0]), epsilon=0.5,
      ...             steps=5)
      >>> x_adv.tolist()
      [[-0.5, -0.5]]
    """
    x, y, epsilon, bounds = _attack_settings(x, y, epsilon, norm, bounds)
    check_at_least("steps", steps, 1)
    if step_size is None:
        step_size = 2.5 * epsilon / steps
    else:
        step_size = _scalar_setting("step_size", step_size, positive=True)
    return _pgd(apply, params, x, y, epsilon, step_size, steps, norm, bounds)


@partial(jax.jit, static_argnums=(0, 6, 7, 8))
def _pgd(apply, params, x, y, epsilon, step_size, steps, norm, bounds):
    def ascend(_, x_adv):
        direction = _steepest(_input_gradient(apply, params, x_adv, y), norm)
        return _project(x_adv + step_size * direction, x, epsilon, norm, bounds)

    return jax.lax.fori_loop(0, steps, ascend, x)


def accuracy_curves(
    apply: Apply,
    params: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    sigmas: Sequence[float],
    epsilons: Sequence[float],
    key: jax.Array,
    draws: int = 1,
    pgd_steps: int = 10,
    norm: Norm = "linf",
    bounds: tuple[float, float] | None = None,
) -> dict[str, list[float]]:
    """Accuracy against Gaussian noise, FGSM and PGD, over grids of their sizes.

    Returns ``{"gaussian": [...], "fgsm": [...], "pgd": [...]}``, one accuracy per
    entry of ``sigmas`` (:func:`noise_accuracy` with ``key`` and ``draws``) and of
    ``epsilons`` (:func:`fgsm` and :func:`pgd` with ``pgd_steps``, ``norm`` and
    ``bounds``). Each function compiles once for the whole grid. ``apply(params,
    x_batch) -> logits`` as in the module docstring.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> x, y = jnp.array([[1.0, 0.0]]), jnp.array([0])
      >>> accuracy_curves(apply, jnp.eye(2), x, y, sigmas=[0.0], epsilons=[0.0, 1.0],
      ...                 key=jax.random.key(0))
      {'gaussian': [1.0], 'fgsm': [1.0, 0.0], 'pgd': [1.0, 0.0]}
    """

    def attacked(attack, epsilon, **options):
        x_adv = attack(
            apply, params, x, y, epsilon=epsilon, norm=norm, bounds=bounds, **options
        )
        return float(accuracy(apply, params, x_adv, y))

    return {
        "gaussian": [
            float(noise_accuracy(apply, params, x, y, sigma=s, key=key, draws=draws))
            for s in sigmas
        ],
        "fgsm": [attacked(fgsm, e) for e in epsilons],
        "pgd": [attacked(pgd, e, steps=pgd_steps) for e in epsilons],
    }


def evaluate(
    apply: Apply, params: Any, x: ArrayLike, y: ArrayLike, **curve_options: Any
) -> dict[str, float | list[float]]:
    """Clean accuracy, sensitivity and the noise and attack curves of a classifier.

    Returns ``{"accuracy", "jacobian_frobenius", "input_gradient_norm", "gaussian",
    "fgsm", "pgd"}``: :func:`accuracy`, :func:`sensitivity` (means over examples of
    ||J||_F and ||grad_x loss||_2) as floats, then :func:`accuracy_curves` with
    ``curve_options`` (its keywords: ``sigmas``, ``epsilons``, ``key``, ...), one
    float per entry of ``sigmas`` or ``epsilons``. ``apply(params,
    x_batch) -> logits`` as in the module docstring.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> apply = lambda w, x: x @ w
      >>> x, y = jnp.array([[1.0, 0.0]]), jnp.array([0])
      >>> evaluate(apply, jnp.eye(2), x, y, sigmas=[0.0], epsilons=[1.0],
      ...          key=jax.random.key(0))["fgsm"]
      [0.0]
    """
    sensitivities = sensitivity(apply, params, x, y)
    return {
        "accuracy": float(accuracy(apply, params, x, y)),
        **{name: float(value) for name, value in sensitivities.items()},
        **accuracy_curves(apply, params, x, y, **curve_options),
    }

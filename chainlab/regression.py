"""Linear M-estimation: fit ``y ~ X w + b`` under a loss of the residual.

An M-estimator (Huber 1964, "Robust Estimation of a Location Parameter", Ann. Math.
Statist. 35(1)) minimises ``mean_i rho(y_i - x_i . w - b)``. Its estimating equation
``sum_i rho'(r_i) (x_i, 1) = 0`` shows each point pulling with the force ``rho'(r_i)``:
``r`` for the squared loss (unbounded), ``clip(r, -delta, delta)`` for Huber's loss,
``sign(r)`` for the absolute loss. So a fraction of gross errors moves the squared fit
by O(fraction x error) and a bounded-influence fit by O(fraction x bound).

- :func:`contaminated_linear_data`: Gaussian design, Gaussian noise and a fraction of
  one-sided gross errors.
- :func:`fit_linear`: the M-estimates of several losses by full-batch Adam with a
  cosine decay, with :func:`chainlab.training.fit` (float32).
- :func:`reference_fit`: the same estimates from independent float64 solvers
  (``numpy.linalg.lstsq``, ``scipy.optimize.least_squares(loss="huber")``, the linear
  program of ``sklearn``'s ``QuantileRegressor``), to check a gradient fit against.

Parameters are returned as ``theta = (w_1, ..., w_d, b)``.
"""

from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from chainlab.training import fit
from chainlab.validation import (
    check_at_least,
    check_choice,
    check_nonnegative,
    check_positive,
)

__all__ = ["LinearData", "contaminated_linear_data", "fit_linear", "reference_fit"]

Rho = Callable[[jax.Array], jax.Array]
LOSSES = ("squared", "huber", "absolute")


class LinearData(NamedTuple):
    """A regression problem with its truth: ``theta = (w, b)``, outlier rows."""

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    outliers: np.ndarray


def contaminated_linear_data(
    *,
    num_samples: int,
    num_features: int,
    noise_std: float = 1.0,
    outlier_fraction: float = 0.1,
    outlier_scale: float = 20.0,
    intercept: float = 1.0,
    seed: int = 0,
) -> LinearData:
    """``y = X w + b + N(0, noise_std^2)`` with one-sided gross errors (float64).

    ``X ~ N(0, I)``, ``w ~ N(0, I)``, ``b = intercept``; ``round(outlier_fraction n)``
    random responses get ``+ outlier_scale * U[0.5, 1.5]``. Everything is drawn from
    ``np.random.default_rng(seed)`` in that order.

    Example:
      >>> data = contaminated_linear_data(num_samples=10, num_features=2)
      >>> data.x.shape, data.y.shape, data.theta.shape, data.outliers.size
      ((10, 2), (10,), (3,), 1)
    """
    check_at_least("num_samples", num_samples, 1)
    check_at_least("num_features", num_features, 1)
    check_nonnegative("noise_std", noise_std)
    check_nonnegative("outlier_scale", outlier_scale)
    if not 0.0 <= outlier_fraction <= 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1], got {outlier_fraction}")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=num_features)
    x = rng.normal(size=(num_samples, num_features))
    y = x @ w + intercept + noise_std * rng.normal(size=num_samples)
    outliers = rng.permutation(num_samples)[: round(outlier_fraction * num_samples)]
    y[outliers] += outlier_scale * rng.uniform(0.5, 1.5, size=outliers.size)
    return LinearData(x, y, np.append(w, intercept), outliers)


def fit_linear(
    losses: Mapping[str, Rho],
    x: ArrayLike,
    y: ArrayLike,
    *,
    steps: int,
    learning_rate: float,
    seed: int = 0,
    **fit_options: Any,
) -> dict[str, np.ndarray]:
    """The M-estimate ``theta = (w, b)`` of each loss, by full-batch Adam.

    Minimises ``mean_i rho(y_i - x_i . w - b)`` from ``theta = 0`` with Adam and a
    cosine decay from ``learning_rate`` to 0 over ``steps``, in float32. All losses
    train in one run: the objective is the sum of the per-loss objectives, each with
    its own parameters, and Adam is coordinate-wise, so this is the same as separate
    runs but compiles once. For a convex ``rho`` it converges to the M-estimate (check
    it with :func:`reference_fit`).

    Args:
      losses: ``{name: rho}``, each ``rho`` elementwise on residuals, e.g.
        ``lambda r: chainlab.losses.huber(r, delta=1.345)``.
      x: ``(n, d)`` design; y: ``(n,)`` responses.
      steps: Adam steps (>= 1); learning_rate: initial step size (> 0).
      seed: passed to ``fit``.
      fit_options: more keywords of :func:`chainlab.training.fit` (``metrics_path``,
        ``log_every``, ``name``, ...).

    Returns:
      ``{name: theta}``, float64 arrays of shape ``(d + 1,)``.

    Example:
      >>> x = np.arange(8.0)[:, None]
      >>> fits = fit_linear({"squared": lambda r: 0.5 * r**2}, x, 2 * x[:, 0] + 1,
      ...                   steps=800, learning_rate=0.1)
      >>> np.round(fits["squared"], 2).tolist()
      [2.0, 1.0]
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ValueError(
            f"x and y must have shapes (n, d) and (n,), got {x.shape} and {y.shape}"
        )
    check_at_least("steps", steps, 1)
    check_positive("learning_rate", learning_rate)
    params = {name: {"w": jnp.zeros(x.shape[1]), "b": jnp.zeros(())} for name in losses}

    def loss_fn(params, batch, key):
        del key  # deterministic
        xb, yb = batch
        per_loss = {
            name: jnp.mean(rho(yb - xb @ params[name]["w"] - params[name]["b"]))
            for name, rho in losses.items()
        }
        return sum(per_loss.values()), per_loss

    fit_options = {"log_every": max(steps // 20, 1), "name": "fit_linear"} | fit_options
    schedule = optax.cosine_decay_schedule(learning_rate, steps)
    result = fit(
        loss_fn,
        params,
        optax.adam(schedule),
        (x, y),
        steps=steps,
        batch_size=x.shape[0],
        seed=seed,
        has_aux=True,
        **fit_options,
    )
    return {
        name: np.append(np.asarray(p["w"], np.float64), float(p["b"]))
        for name, p in result.params.items()
    }


def reference_fit(
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: Literal["squared", "huber", "absolute"],
    delta: float | None = None,
) -> np.ndarray:
    """The M-estimate ``theta = (w, b)`` from an independent float64 solver.

    - ``"squared"``: ``numpy.linalg.lstsq`` (ordinary least squares);
    - ``"huber"`` (needs ``delta > 0``): ``scipy.optimize.least_squares`` with
      ``loss="huber", f_scale=delta``, whose objective ``delta^2 rho((r / delta)^2)``
      is twice Huber's ``h_delta(r)`` (same minimiser), from the least-squares fit;
    - ``"absolute"``: median regression, the linear program of
      ``sklearn.linear_model.QuantileRegressor(quantile=0.5, alpha=0)``.

    Example:
      >>> x = np.arange(5.0)[:, None]
      >>> y = 2 * x[:, 0] + 1
      >>> y[-1] += 100.0  # a gross error: the median fit ignores it
      >>> np.round(reference_fit(x, y, loss="absolute"), 6).tolist()
      [2.0, 1.0]
    """
    check_choice("loss", loss, LOSSES)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ValueError(
            f"x and y must have shapes (n, d) and (n,), got {x.shape} and {y.shape}"
        )
    if (loss == "huber") != (delta is not None):
        raise ValueError(f"delta must be given exactly for loss='huber', got {delta}")
    if delta is not None:
        check_positive("delta", delta)
    design = np.column_stack([x, np.ones(len(y))])
    least_squares = np.linalg.lstsq(design, y, rcond=None)[0]
    if loss == "squared":
        return least_squares
    if loss == "huber":
        import scipy.optimize

        return scipy.optimize.least_squares(
            lambda theta: design @ theta - y,
            least_squares,
            loss="huber",
            f_scale=float(delta),
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
        ).x
    from sklearn.linear_model import QuantileRegressor

    median = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(x, y)
    return np.append(median.coef_, median.intercept_)

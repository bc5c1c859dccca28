"""Figures the experiments share: panels of curves, one line per setting, and the
moments of Monte Carlo estimators against their closed forms.

Built on :func:`chainlab.runner.plotting.new_figure` (no GUI backend); save the
result with ``Workdir.save_figure``.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chainlab.runner.plotting import new_figure

__all__ = ["curve_panels", "estimator_panels"]


def curve_panels(
    panels: Sequence[tuple[str, Sequence[float], Mapping[str, Sequence[float]]]],
    *,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    legend_title: str | None = None,
    panel_size: tuple[float, float] = (4.3, 3.8),
) -> Any:
    """A figure of side-by-side panels ``(xlabel, xs, {label: ys})``.

    Every panel draws one marked line per label against ``xs``, with a shared
    ``ylabel`` and ``ylim``; the first panel carries the legend.

    Example:
      >>> figure = curve_panels([("step", [0, 1], {"a": [1.0, 0.5]})], ylabel="loss")
      >>> len(figure.axes)
      1
    """
    width, height = panel_size
    figure, axes = new_figure(
        1, len(panels), size=(width * len(panels), height), squeeze=False
    )
    for ax, (xlabel, xs, curves) in zip(axes[0], panels, strict=True):
        for label, ys in curves.items():
            ax.plot(xs, ys, marker="o", label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, ylim=ylim)
    axes[0][0].legend(title=legend_title)
    return figure


def estimator_panels(
    summaries: Mapping[str, Mapping[str, Any]],
    *,
    ylabel: str,
    panel_size: tuple[float, float] = (5.5, 4.0),
) -> Any:
    """Two panels of unbiased estimators against their number of probes n.

    ``summaries`` maps each estimator's name to its
    :meth:`chainlab.regularizers.EstimatorStudy.summary` (lists ``num_projections``,
    ``exact`` (E,), ``mean`` and ``variance`` (P, E), ``relative_variance`` and
    ``predicted_relative_variance`` (P,)); every estimator gets one colour. Left: the
    estimates of example 0, mean +- std over draws, against the exact value (dashed)
    of the first summary, labelled ``ylabel``. Right, log-log: Var[estimate] /
    exact^2 sampled (dots) and in closed form (line), which falls as 1 / n.

    Example:
      >>> s = {"num_projections": [1, 2], "exact": [1.0], "mean": [[1.1], [0.9]],
      ...      "variance": [[0.5], [0.25]], "relative_variance": [0.5, 0.25],
      ...      "predicted_relative_variance": [0.5, 0.25]}
      >>> len(estimator_panels({"projection": s}, ylabel="R").axes)
      2
    """
    width, height = panel_size
    figure, (left, right) = new_figure(1, 2, size=(2 * width, height))
    for index, (name, summary) in enumerate(summaries.items()):
        ns, color = summary["num_projections"], f"C{index}"
        mean = np.asarray(summary["mean"])[:, 0]
        std = np.sqrt(np.asarray(summary["variance"])[:, 0])
        left.fill_between(ns, mean - std, mean + std, color=color, alpha=0.2)
        left.plot(ns, mean, marker="o", color=color, label=f"{name}: mean +- std")
        right.loglog(ns, summary["relative_variance"], "o", color=color)
        label = f"{name}: empirical (dots), closed form (line)"
        right.loglog(
            ns, summary["predicted_relative_variance"], color=color, label=label
        )
    exact = next(iter(summaries.values()))["exact"][0]
    left.axhline(exact, color="k", ls="--", label="exact")
    left.set(xscale="log", xlabel="num_projections", ylabel=ylabel)
    right.set(xlabel="num_projections", ylabel="Var[estimate] / exact^2")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    return figure

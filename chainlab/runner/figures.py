"""Figures the experiments share: panels of curves, one line per setting.

Built on :func:`chainlab.runner.plotting.new_figure` (no GUI backend); save the
result with ``Workdir.save_figure``.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from chainlab.runner.plotting import new_figure

__all__ = ["curve_panels"]


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

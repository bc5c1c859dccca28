"""Figure helpers that never touch a GUI backend.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), so they
work headless, in threads and in tests; save them with ``Workdir.save_figure``.
"""

from matplotlib.figure import Figure


def new_figure(
    nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (6.0, 4.0), **kwargs
):
    """A ``(figure, axes)`` pair like ``plt.subplots``, without pyplot's state."""
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(nrows, ncols, **kwargs)
    return figure, axes

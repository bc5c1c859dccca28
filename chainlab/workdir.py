"""A run's folder: what an experiment writes and how its report is assembled.

Layout (DESIGN.md)::

    config.json     resolved config
    versions.json   python, jax, jaxlib, flax, optax, backend, device count, seed
    metrics.jsonl   training curves, one JSON object per line
    results.json    final figures (the keys each issue names)
    report.md       measured | target | source | verdict, notes and figures
    *.png           figures
    checkpoints/    training checkpoints

Nothing in a workdir is ever deleted or rewritten by a later run: the runner refuses a
non-empty workdir unless asked to ``--resume`` it.
"""

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_VERDICTS = {True: "pass", False: "FAIL", None: "info"}


@dataclass
class Check:
    """One row of a report: a measured figure against its target."""

    name: str
    measured: Any
    target: str
    source: str
    passed: bool | None

    def row(self) -> str:
        cells = (self.name, format_value(self.measured), self.target, self.source)
        return "| " + " | ".join(cells) + f" | {_VERDICTS[self.passed]} |"


@dataclass
class Workdir:
    """The folder an experiment writes into, handed to ``run(config, workdir)``.

    Attributes:
      path: the folder itself.
      resume: whether training should continue from the last checkpoint.
    """

    path: Path
    resume: bool = False
    checks: list[Check] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    @property
    def checkpoint_dir(self) -> Path:
        """Where training checkpoints live (``checkpoints/`` inside the workdir)."""
        return self.path / "checkpoints"

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append ``{"step": step, **metrics}`` as one line of ``metrics.jsonl``."""
        record = {"step": int(step), **to_json(dict(metrics))}
        with open(self.path / "metrics.jsonl", "a") as stream:
            stream.write(json.dumps(record) + "\n")

    def save_figure(self, figure, name: str, *, caption: str = "") -> Path:
        """Save a matplotlib figure as ``name.png`` and show it in the report."""
        filename = name if name.endswith(".png") else f"{name}.png"
        target = self.path / filename
        figure.savefig(target, dpi=110)
        self.sections.append(f"![{caption or name}]({filename})")
        if caption:
            self.sections.append(f"*{caption}*")
        return target

    def check(
        self,
        name: str,
        measured: Any,
        *,
        target: str,
        source: str,
        passed: bool | None = None,
    ) -> None:
        """Add a row to the report's table; ``passed=None`` marks it informative."""
        verdict = None if passed is None else bool(passed)
        self.checks.append(Check(name, to_json(measured), target, source, verdict))

    def note(self, markdown: str) -> None:
        """Add a paragraph or a markdown table to the report."""
        self.sections.append(markdown.strip())

    def render_report(self, title: str, header: str, failure: str | None = None) -> str:
        """The markdown of ``report.md``."""
        lines = [f"# {title}", "", header, ""]
        if failure:
            lines += [f"**FAILED:** {failure}", ""]
        if self.checks:
            lines += [
                "| quantity | measured | target | source | verdict |",
                "|---|---|---|---|---|",
                *(check.row() for check in self.checks),
                "",
            ]
        for section in self.sections:
            lines += [section, ""]
        return "\n".join(lines)


def format_value(value: Any) -> str:
    """Short human form of a measured value for a table cell."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value == 0 or math.isnan(value) or math.isinf(value):
            return str(value)
        magnitude = abs(value)
        return (
            f"{value:.3e}" if magnitude < 1e-3 or magnitude >= 1e6 else f"{value:.6g}"
        )
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    return str(value)


def to_json(value: Any) -> Any:
    """Convert numpy / jax scalars and arrays inside ``value`` to plain Python."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    array = np.asarray(value)
    if array.dtype == bool:
        return array.tolist()
    if np.issubdtype(array.dtype, np.integer):
        return array.tolist()
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(float).tolist()
    return str(value)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (non-finite floats as ``NaN``/``Infinity``)."""
    path.write_text(json.dumps(to_json(data), indent=2) + "\n")


def versions(seed: int) -> dict[str, Any]:
    """The software and hardware a run used, for ``versions.json``."""
    import flax
    import jax
    import jaxlib
    import optax

    import chainlab

    return {
        "python": platform.python_version(),
        "chainlab": chainlab.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "devices": [str(device) for device in jax.devices()],
        "platform": platform.platform(),
        "seed": int(seed),
    }

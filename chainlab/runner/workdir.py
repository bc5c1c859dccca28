"""A run's folder: what an experiment writes and how its report is assembled.

Layout::

    config.json     resolved config
    versions.json   python, jax, jaxlib, flax, optax, backend, device count, seed
    metrics.jsonl   training curves, one JSON object per line
    results.json    final figures
    report.md       measured | target | source | verdict, notes and figures
    *.png           figures
    checkpoints/    training checkpoints

Nothing in a workdir is ever deleted or rewritten by a later run: the runner refuses a
non-empty workdir unless asked to ``--resume`` it.
"""

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chainlab.runner.report import Check, make_check, markdown_table, to_json

__all__ = ["Workdir", "to_json", "versions", "write_json", "write_text"]


@dataclass
class Workdir:
    """The folder an experiment writes into, handed to ``run(config, workdir)``.

    Attributes:
      path: the folder itself.
      resume: whether training should continue from the last checkpoint.
      writes: whether this process writes files (process 0 of a multi-process run;
        the others still collect checks and notes).
      mirror: where metric records also go, e.g. a
        :class:`chainlab.runner.tensorboard.TensorBoardMirror`; ``None`` for none.
    """

    path: Path
    resume: bool = False
    writes: bool = True
    mirror: Any = None  # a TensorBoardMirror, or None
    checks: list[Check] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    @property
    def checkpoint_dir(self) -> Path:
        """Where training checkpoints live (``checkpoints/`` inside the workdir)."""
        return self.path / "checkpoints"

    @property
    def fit_options(self) -> dict[str, Any]:
        """The files :func:`chainlab.training.fit` writes: ``fit(..., **options)``."""
        return {
            "metrics_path": self.path / "metrics.jsonl",
            "checkpoint_dir": self.checkpoint_dir,
            "resume": self.resume,
            "on_record": None if self.mirror is None else self.mirror.write,
        }

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append ``{"step": step, **metrics, "time": now}`` as one line of
        ``metrics.jsonl``, unless a resumed run logged that step (same ``run`` and
        ``split``) before its interruption."""
        record = {"step": int(step), **to_json(dict(metrics))}
        path = self.path / "metrics.jsonl"
        if not self.writes:
            return
        if self.resume and path.exists():
            key = _record_key(record)
            for line in path.read_text().splitlines():
                if line.startswith("{") and _record_key(json.loads(line)) == key:
                    return
        record["time"] = round(time.time(), 3)
        with open(path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.mirror is not None:
            self.mirror.write(record)

    def save_figure(self, figure, name: str, *, caption: str = "") -> Path:
        """Save a matplotlib figure as ``name.png`` and show it in the report."""
        filename = name if name.endswith(".png") else f"{name}.png"
        target = self.path / filename
        self.sections.append(f"![{caption or name}]({filename})")
        if caption:
            self.sections.append(f"*{caption}*")
        if not self.writes:
            return target
        temporary = target.with_name(f".{filename}.tmp.png")
        figure.savefig(temporary, dpi=110)
        os.replace(temporary, target)
        return target

    def check(self, name: str, measured: Any, *, source: str, **threshold) -> None:
        """Add a row to the report's table: ``measured`` against one threshold.

        ``threshold`` is one of the keywords of
        :func:`chainlab.runner.report.make_check` (``at_most=1e-6``,
        ``close_to=x, rtol=1e-3``, ``info="reported"``, ...); it renders the target
        text and decides the verdict.
        """
        self.checks.append(make_check(name, measured, source=source, **threshold))

    def note(self, markdown: str) -> None:
        """Add a paragraph or a markdown table to the report."""
        self.sections.append(markdown.strip())

    def goal(
        self, name: str, measured: Any, *, source: str, judged: bool, **threshold
    ) -> None:
        """Add a training goal: a :meth:`check` when ``judged``, else info.

        A run too short to reach the goal (a quick variant) reports it without a
        verdict, its target text followed by "at paper scale"; a goal given as
        ``info`` is reported as it is.
        """
        check = make_check(name, measured, source=source, **threshold)
        if not judged and check.passed is not None:
            info = f"{check.target} at paper scale"
            check = make_check(name, measured, source=source, info=info)
        self.checks.append(check)

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
    ) -> None:
        """Add a :func:`~chainlab.runner.report.markdown_table`, after ``title:``."""
        table = markdown_table(header, rows)
        self.note(f"{title}:\n\n{table}" if title else table)

    def render_report(self, title: str, header: str, failure: str | None = None) -> str:
        """The markdown of ``report.md``."""
        lines = [f"# {title}", "", header, ""]
        if failure:
            lines += [f"**FAILED:** {failure}", ""]
        if self.checks:
            columns = ["quantity", "measured", "target", "source", "verdict"]
            rows = [check.row() for check in self.checks]
            lines += [markdown_table(columns, rows), ""]
        for section in self.sections:
            lines += [section, ""]
        return "\n".join(lines)


def _record_key(record: Mapping[str, Any]) -> tuple:
    return record.get("step"), record.get("run"), record.get("split")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a kill leaves the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (non-finite floats as ``NaN``/``Infinity``),
    atomically."""
    write_text(path, json.dumps(to_json(data), indent=2) + "\n")


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

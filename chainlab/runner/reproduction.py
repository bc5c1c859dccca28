"""``chainlab reproduce``: every experiment into one folder, gathered in REPORT.md."""

import re
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from chainlab.errors import ChainlabError
from chainlab.progress import progress
from chainlab.runner.execution import prepare_workdir, run
from chainlab.runner.registry import check_name, list_experiments

__all__ = ["Reproduction", "reproduce"]


class Reproduction(NamedTuple):
    """Where ``reproduce`` wrote, and per experiment its status, seconds and error."""

    workdir: Path
    experiments: dict[str, dict]

    @property
    def ok(self) -> bool:
        return all(e["status"] == "ok" for e in self.experiments.values())


def reproduce(
    *,
    variant: str = "",
    only: Iterable[str] | None = None,
    workdir: str | Path | None = None,
) -> Reproduction:
    """Run every experiment (or ``only`` some), each in ``workdir/NAME``, and write
    ``workdir/REPORT.md`` gathering their tables and figures.

    One failing experiment is recorded as failed and does not stop the others; the
    returned :class:`Reproduction` says which.
    """
    names = list(only) if only else list_experiments()
    for name in names:
        check_name(name)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = Path(workdir) if workdir is not None else Path("runs/reproduce") / stamp
    prepare_workdir(root, resume=False)
    summary: dict[str, dict] = {}
    bar = progress(names, desc="reproduce")
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            run(name, variant=variant, workdir=root / name)
            summary[name] = {"status": "ok"}
        except ChainlabError as error:
            summary[name] = {"status": "failed", "error": str(error)}
        summary[name]["seconds"] = round(time.perf_counter() - start, 2)
    (root / "REPORT.md").write_text(_gather_reports(root, names, summary, variant))
    return Reproduction(root, summary)


def _gather_reports(
    root: Path, names: list[str], summary: dict[str, dict], variant: str
) -> str:
    shown = variant or "default (paper scale)"
    lines = [
        "# chainlab: reproduced results",
        "",
        f"variant: {shown} · {datetime.now().isoformat(timespec='seconds')}",
        "",
        "| experiment | status | seconds | checks passed |",
        "|---|---|---|---|",
    ]
    for name in names:
        passed, total = _count_checks(root / name / "report.md")
        lines.append(
            f"| [{name}](#{name}) | {summary[name]['status']} | "
            f"{summary[name]['seconds']} | {passed}/{total} |"
        )
    lines.append("")
    for name in names:
        lines += [f'<a id="{name}"></a>', ""]
        report = root / name / "report.md"
        if report.exists():
            lines.append(_relink_figures(report.read_text(), name))
        else:
            lines += [f"# {name}", "", f"**FAILED:** {summary[name].get('error')}"]
        lines.append("")
    return "\n".join(lines)


def _count_checks(report: Path) -> tuple[int, int]:
    if not report.exists():
        return 0, 0
    rows = [
        line
        for line in report.read_text().splitlines()
        if line.startswith("| ") and line.rstrip().endswith(("| pass |", "| FAIL |"))
    ]
    return sum(row.rstrip().endswith("| pass |") for row in rows), len(rows)


def _relink_figures(markdown: str, name: str) -> str:
    """Point a report's image links (relative to its folder) into ``name/``."""
    return re.sub(r"(!\[[^\]]*\]\()([^)/]+\.png\))", rf"\g<1>{name}/\g<2>", markdown)

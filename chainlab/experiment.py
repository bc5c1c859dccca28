"""Experiment registry, config resolution, and the runner behind ``chainlab run``.

An experiment NAME is two modules that ship with the package:

- ``experiments/NAME.py`` (``chainlab.experiments.NAME``): ``run(config, workdir) ->
  dict``; the first line of its docstring is its description.
- ``configs/NAME.py`` (``chainlab.configs.NAME``): ``get_config(variant) ->
  ConfigDict`` with variants ``""`` (paper scale) and ``"quick"`` (seconds).

Your own experiments need no change to the package: put ``experiments/NAME.py`` and
``configs/NAME.py`` under a folder and list it in the ``CHAINLAB_PATH`` environment
variable (``os.pathsep``-separated, like ``PYTHONPATH``).

From Python::

    import chainlab
    results = chainlab.run("activation_kinks", variant="quick")
"""

import difflib
import importlib
import os
import pkgutil
import re
import shutil
import time
import traceback
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import ml_collections

import chainlab.configs
import chainlab.experiments
from chainlab.configuration import apply_overrides, load_config_file
from chainlab.errors import ChainlabError, ExperimentFailed
from chainlab.progress import progress
from chainlab.workdir import Workdir, to_json, versions, write_json

__all__ = [
    "Reproduction",
    "Workdir",
    "default_workdir",
    "describe",
    "get_config",
    "list_experiments",
    "reproduce",
    "run",
]

DEFAULT_VARIANTS = ("", "quick")
SEARCH_PATH_VARIABLE = "CHAINLAB_PATH"


def _extend_search_path() -> None:
    """Add ``$CHAINLAB_PATH/{experiments,configs}`` folders to the two packages."""
    for root in filter(
        None, os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep)
    ):
        for package in (chainlab.experiments, chainlab.configs):
            folder = str(Path(root) / package.__name__.rsplit(".", 1)[-1])
            if folder not in package.__path__:
                package.__path__.append(folder)


def list_experiments() -> list[str]:
    """Names of all registered experiments, sorted."""
    _extend_search_path()
    return sorted(
        info.name
        for info in pkgutil.iter_modules(chainlab.experiments.__path__)
        if not info.name.startswith("_")
    )


def _check_name(name: str) -> None:
    names = list_experiments()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ChainlabError(
        f"unknown experiment {name!r}; {hint}available: {', '.join(names)}"
    )


def _experiment_module(name: str) -> ModuleType:
    _check_name(name)
    return importlib.import_module(f"chainlab.experiments.{name}")


def _config_module(name: str) -> ModuleType:
    _check_name(name)
    try:
        return importlib.import_module(f"chainlab.configs.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"chainlab.configs.{name}":
            raise
        raise ChainlabError(f"experiment {name!r} has no configs/{name}.py") from None


def describe(name: str) -> str:
    """The one-line description of an experiment (its module docstring's first line)."""
    doc = _experiment_module(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def get_config(
    name: str,
    variant: str = "",
    *,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> ml_collections.ConfigDict:
    """The resolved config: variant, then a JSON config file, then ``overrides``.

    Override values may be strings (parsed by the existing field's type, as ``--set``
    does) or Python values of the right type.
    """
    module = _config_module(name)
    allowed = tuple(getattr(module, "VARIANTS", DEFAULT_VARIANTS))
    if variant not in allowed:
        shown = ", ".join(repr(v) for v in allowed)
        raise ChainlabError(
            f"unknown variant {variant!r} for {name}; allowed: {shown} "
            "('' is the paper-scale default)"
        )
    config = module.get_config(variant)
    if config_file is not None:
        config = apply_overrides(config, load_config_file(config_file))
    return apply_overrides(config, dict(overrides or {}))


def default_workdir(name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / name / stamp


def _prepare_workdir(path: Path, resume: bool) -> None:
    if resume:
        if not (path / "config.json").is_file():
            raise ChainlabError(
                f"cannot resume: {str(path)!r} holds no run (no config.json)"
            )
        return
    if path.exists() and not path.is_dir():
        raise ChainlabError(f"workdir {str(path)!r} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise ChainlabError(
            f"workdir {str(path)!r} is not empty; nothing was overwritten. Use "
            "--resume to continue that run or choose a new --workdir"
        )
    path.mkdir(parents=True, exist_ok=True)


def _resume_config(
    path: Path, config: ml_collections.ConfigDict, explicit: bool
) -> ml_collections.ConfigDict:
    """On resume the saved config wins; an explicit different one is refused."""
    import json

    saved = json.loads((path / "config.json").read_text())
    if explicit and to_json(config.to_dict()) != saved:
        raise ChainlabError(
            f"cannot resume {str(path)!r} with a different config; drop --variant/"
            "--set/--config to continue it as saved"
        )
    return ml_collections.ConfigDict(saved)


def run(
    name: str,
    *,
    variant: str = "",
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    workdir: str | Path | None = None,
    resume: bool = False,
) -> dict:
    """Run one experiment and return its results (also written to ``results.json``).

    Args:
      name: an experiment from :func:`list_experiments`.
      variant: ``""`` for the paper-scale run, ``"quick"`` for a smoke test.
      overrides: dotted config keys to replace, e.g. ``{"train.steps": 100}``.
      config_file: a JSON file of overrides (e.g. an earlier run's config.json).
      workdir: where to write; default ``runs/NAME/<timestamp>``. Must be new or empty
        unless ``resume`` is set.
      resume: continue the run in ``workdir`` from its last checkpoint.

    Raises:
      ChainlabError: for anything wrong with the request; also when the experiment
        itself fails, after writing what it had into the workdir.
    """
    module = _experiment_module(name)
    config = get_config(name, variant, overrides=overrides, config_file=config_file)
    path = Path(workdir) if workdir is not None else default_workdir(name)
    _prepare_workdir(path, resume)
    if resume:
        explicit = bool(variant or overrides or config_file)
        config = _resume_config(path, config, explicit)
    else:
        write_json(path / "config.json", config.to_dict())
    seed = int(config.get("seed", 0))
    write_json(path / "versions.json", {**versions(seed), "experiment": name})
    _use_compilation_cache()

    work = Workdir(path=path, resume=resume)
    title = f"{name}: {describe(name)}"
    start = time.perf_counter()
    try:
        results = module.run(config, work)
    except Exception as error:
        elapsed = time.perf_counter() - start
        (path / "error.txt").write_text(traceback.format_exc())
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        header = _header(variant, seed, elapsed, failed=True)
        _write_report(path, work.render_report(title, header, failure=reason))
        raise ExperimentFailed(
            f"experiment {name} failed: {reason} (partial output kept in {path}, "
            "traceback in error.txt)"
        ) from error
    elapsed = time.perf_counter() - start
    write_json(path / "results.json", results)
    header = _header(variant, seed, elapsed, failed=False)
    _write_report(path, work.render_report(title, header))
    return to_json(results)


def _header(variant: str, seed: int, elapsed: float, *, failed: bool) -> str:
    shown = variant or "default (paper scale)"
    state = "failed after" if failed else "finished in"
    return f"variant: {shown} · seed: {seed} · {state} {elapsed:.1f} s"


def _write_report(path: Path, text: str) -> None:
    report = path / "report.md"
    if report.exists():  # a resumed run keeps the earlier report beside the new one
        shutil.copy(report, path / f"report.{int(time.time())}.md")
    report.write_text(text)


def _use_compilation_cache() -> None:
    """Persist compiled programs across runs unless the user configured a cache."""
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        cache = Path.home() / ".cache" / "chainlab" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # Most programs here compile in well under JAX's default 1 s threshold.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


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
        _check_name(name)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = Path(workdir) if workdir is not None else Path("runs/reproduce") / stamp
    _prepare_workdir(root, resume=False)
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

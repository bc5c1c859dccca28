"""Running one experiment: its workdir, its config on disk, its report.

From Python::

    import chainlab
    results = chainlab.run("activation_kinks", variant="quick")
"""

import json
import shutil
import time
import traceback
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import ml_collections

from chainlab import distributed
from chainlab.errors import ChainlabError, ExperimentFailed, RunInterrupted
from chainlab.runner.registry import describe, experiment_module, get_config
from chainlab.runner.tensorboard import TensorBoardMirror
from chainlab.runner.workdir import Workdir, to_json, versions, write_json, write_text
from chainlab.training import TrainingInterrupted

__all__ = ["default_workdir", "prepare_workdir", "run"]


def default_workdir(name: str) -> Path:
    """``runs/NAME/<timestamp>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / name / stamp


def prepare_workdir(path: Path, resume: bool) -> None:
    """Check ``path`` can hold a new run (or holds one to resume); create it."""
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
            "resume=True to continue that run or choose a new workdir"
        )
    path.mkdir(parents=True, exist_ok=True)


def _resume_config(
    path: Path, config: ml_collections.ConfigDict, explicit: bool
) -> ml_collections.ConfigDict:
    """On resume the saved config wins; an explicit different one is refused."""
    saved = json.loads((path / "config.json").read_text())
    if explicit and to_json(config.to_dict()) != saved:
        raise ChainlabError(
            f"cannot resume {str(path)!r} with a different config; drop variant/"
            "overrides/config_file to continue it as saved"
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
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    distributed_timeout: int = distributed.DEFAULT_TIMEOUT,
    tensorboard: bool = False,
) -> dict:
    """Run one experiment and return its results (also written to ``results.json``).

    A run of several processes (every one calls ``run`` with the same arguments but
    its own ``process_id``, or a cluster JAX detects supplies them) shares one
    ``workdir``: process 0 writes config, metrics, results, report and figures, all
    processes take part in the checkpoints, and training is data parallel over all
    their devices. Its initialisation lasts for the life of the process; it must
    come before any JAX computation.

    Args:
      name: an experiment from :func:`list_experiments`.
      variant: ``""`` for the paper-scale run, ``"quick"`` for a smoke test.
      overrides: dotted config keys to replace, e.g. ``{"train.steps": 100}``.
      config_file: a JSON file of overrides (e.g. an earlier run's config.json).
      workdir: where to write; default ``runs/NAME/<timestamp>``. Must be new or empty
        unless ``resume`` is set.
      resume: continue the run in ``workdir`` from its last checkpoint.
      coordinator: ``"host:port"`` of process 0, for a run of several processes.
      num_processes: how many processes take part.
      process_id: this process's index.
      distributed_timeout: seconds to wait for a missing or silent peer before the
        run ends.
      tensorboard: also write the metrics as TensorBoard scalars into
        ``workdir/tensorboard`` (needs the ``tensorboard`` extra).

    Raises:
      ChainlabError: for anything wrong with the request; also when the experiment
        itself fails, after writing what it had into the workdir.
      RunInterrupted: SIGINT or SIGTERM (or Ctrl-C) stopped the run; training saved
        a checkpoint and ``resume=True`` continues it.
    """
    module = experiment_module(name)
    config = get_config(name, variant, overrides=overrides, config_file=config_file)
    several = distributed.initialize(
        coordinator, num_processes, process_id, timeout=distributed_timeout
    )
    if several and workdir is None:
        raise ChainlabError(
            "a run of several processes needs workdir= (one they share)"
        )
    path = Path(workdir) if workdir is not None else default_workdir(name)
    main = distributed.is_main_process()
    if main:
        prepare_workdir(path, resume)
    distributed.process_barrier(f"workdir {path}")
    if resume:
        explicit = bool(variant or overrides or config_file)
        config = _resume_config(path, config, explicit)
    elif main:
        write_json(path / "config.json", config.to_dict())
    seed = int(config.get("seed", 0))
    if main:
        write_json(path / "versions.json", {**versions(seed), "experiment": name})

    mirror = TensorBoardMirror(path / "tensorboard") if tensorboard and main else None
    work = Workdir(path=path, resume=resume, writes=main, mirror=mirror)
    title = f"{name}: {describe(name)}"
    start = time.perf_counter()
    try:
        results = module.run(config, work)
    except (Exception, KeyboardInterrupt) as error:
        if mirror is not None:
            mirror.close()
        elapsed = time.perf_counter() - start
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        if main:
            write_text(path / "error.txt", traceback.format_exc())
            header = _header(variant, seed, elapsed, resumed=resume, failed=True)
            _write_report(path, work.render_report(title, header, failure=reason))
        if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
            raise RunInterrupted(
                f"experiment {name} interrupted ({reason}); continue it with "
                f"chainlab.run({name!r}, workdir={str(path)!r}, resume=True)",
                workdir=path,
            ) from error
        raise ExperimentFailed(
            f"experiment {name} failed: {reason} (partial output kept in {path}, "
            "traceback in error.txt)"
        ) from error
    elapsed = time.perf_counter() - start
    if mirror is not None:
        mirror.close()
    if main:
        write_json(path / "results.json", results)
        header = _header(variant, seed, elapsed, resumed=resume, failed=False)
        _write_report(path, work.render_report(title, header))
    return to_json(results)


def _header(
    variant: str, seed: int, elapsed: float, *, resumed: bool, failed: bool
) -> str:
    shown = variant or "default (paper scale)"
    state = "failed after" if failed else "finished in"
    how = " · resumed from its last checkpoints" if resumed else ""
    return f"variant: {shown} · seed: {seed}{how} · {state} {elapsed:.1f} s"


def _write_report(path: Path, text: str) -> None:
    report = path / "report.md"
    if report.exists():  # a resumed run keeps the earlier report beside the new one
        shutil.copy(report, path / f"report.{int(time.time())}.md")
    write_text(report, text)

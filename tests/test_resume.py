"""Kill a real run and resume it, through the console script.

``realnvp_moons --variant quick`` checkpoints every 25 of its 100 steps. One run goes
uninterrupted; a second is killed with SIGKILL after its first checkpoint, resumed,
stopped with SIGTERM after its next checkpoint, and resumed again. Its figures must
equal the uninterrupted run's bit for bit, and its metrics hold each step once.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHAINLAB = str(Path(sys.executable).parent / "chainlab")
EXPERIMENT = "realnvp_moons"
FIT_NAME = "realnvp"
TIMEOUT = 300  # seconds for any one run


def _command(workdir: Path, *extra: str) -> list[str]:
    return [CHAINLAB, "run", EXPERIMENT, "--workdir", str(workdir), *extra]


def _start(env: dict, workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        _command(workdir, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _checkpoints(workdir: Path) -> set[int]:
    folder = workdir / "checkpoints" / FIT_NAME
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def _signal_after_checkpoint(process, workdir: Path, after: int, number) -> None:
    """Send ``number`` as soon as a checkpoint beyond step ``after`` is final."""
    deadline = time.monotonic() + TIMEOUT
    while not any(step > after for step in _checkpoints(workdir)):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    process.send_signal(number)


def _metric_keys(workdir: Path) -> list[tuple]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r.get("run"), r.get("split"), r["step"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_killed_and_stopped_run_resumes_to_identical_figures(tmp_path, child_env):
    full, broken = tmp_path / "full", tmp_path / "broken"
    reference = _start(child_env, full, "--variant", "quick")

    killed = _start(child_env, broken, "--variant", "quick")
    _signal_after_checkpoint(killed, broken, 0, signal.SIGKILL)
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (broken / "results.json").exists()
    first = max(_checkpoints(broken))

    resumed = _start(child_env, broken, "--resume")
    _signal_after_checkpoint(resumed, broken, first, signal.SIGTERM)
    _, stderr = resumed.communicate(timeout=TIMEOUT)
    assert resumed.returncode == 130, stderr[-2000:]
    assert (
        stderr.strip()
        .splitlines()[-1]
        .endswith(f"resume with: chainlab run {EXPERIMENT} --workdir {broken} --resume")
    )
    assert "SIGTERM at step" in stderr

    finished = subprocess.run(
        _command(broken, "--resume"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=child_env,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0

    expected = json.loads((full / "results.json").read_text())
    got = json.loads((broken / "results.json").read_text())
    for figure in ("test_nll", "val_nll", "best_step"):
        assert got[figure] == expected[figure], figure
    keys = _metric_keys(broken)
    assert len(keys) == len(set(keys)), "a step was logged twice"
    # Every record of the uninterrupted run is there (the interruption adds its own).
    assert set(_metric_keys(full)) - {
        k for k in _metric_keys(full) if k[1] == "checkpoint"
    } <= set(keys)
    assert "resumed from its last checkpoints" in (broken / "report.md").read_text()

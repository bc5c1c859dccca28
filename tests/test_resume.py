"""Kill real runs and resume them, through the console script.

``realnvp_moons --variant quick`` (two of its flows) checkpoints every 25 of its
100 steps. One run goes uninterrupted (the reference both tests share). A second is
killed with SIGKILL after its first checkpoint, resumed, stopped with SIGTERM after
its next checkpoint, and resumed again: its figures must equal the reference's bit
for bit. A run of two processes loses one to SIGKILL: the other must end with one
clear line, and both, restarted with ``--resume``, reach the reference's figures to
float tolerance.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHAINLAB = str(Path(sys.executable).parent / "chainlab")
EXPERIMENT = "realnvp_moons"
FIT_NAME = "realnvp"
# Two of the experiment's flows, one after the other: a resumed run skips the
# finished fit and continues the interrupted one.
QUICK = ("--variant", "quick", "--set", "flows=('affine', 'maf')")
TIMEOUT = 300  # seconds for any one run
PEER_TIMEOUT = 3  # --distributed-timeout of the two-process run
# Two processes sum their halves of a batch's gradient in another order than one.
TWO_VS_ONE_RTOL = 1e-5


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


def _finish(process: subprocess.Popen, status: int = 0) -> str:
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == status, stderr[-3000:]
    return stderr


def _checkpoints(workdir: Path) -> set[int]:
    folder = workdir / "checkpoints" / FIT_NAME
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def _wait_for_checkpoint(process, workdir: Path, after: int) -> None:
    """Return as soon as a checkpoint beyond step ``after`` is final."""
    deadline = time.monotonic() + TIMEOUT
    while not any(step > after for step in _checkpoints(workdir)):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)


def _signal_after_checkpoint(process, workdir: Path, after: int, number) -> None:
    """Send ``number`` as soon as a checkpoint beyond step ``after`` is final."""
    _wait_for_checkpoint(process, workdir, after)
    process.send_signal(number)


def _metric_keys(workdir: Path) -> list[tuple]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r.get("run"), r.get("split"), r["step"]) for r in map(json.loads, lines)]


def _results(workdir: Path) -> dict:
    return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, child_env):
    """The uninterrupted quick run's folder (started at once, waited for on use)."""
    workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
    process = _start(child_env, workdir, *QUICK)

    def finished() -> Path:
        if process.returncode is None:
            _finish(process)
        return workdir

    yield finished
    if process.returncode is None:
        process.kill()
        process.communicate()


@pytest.mark.slow
def test_killed_and_stopped_run_resumes_to_identical_figures(
    tmp_path, child_env, reference
):
    broken = tmp_path / "broken"
    killed = _start(child_env, broken, *QUICK)
    _signal_after_checkpoint(killed, broken, 0, signal.SIGKILL)
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (broken / "results.json").exists()
    first = max(_checkpoints(broken))

    resumed = _start(child_env, broken, "--resume")
    _signal_after_checkpoint(resumed, broken, first, signal.SIGTERM)
    stderr = _finish(resumed, status=130)
    hint = f"resume with: chainlab run {EXPERIMENT} --workdir {broken} --resume"
    assert stderr.strip().splitlines()[-1].endswith(hint)
    assert "SIGTERM at step" in stderr
    _finish(_start(child_env, broken, "--resume"))

    full = reference()
    for figure in ("test_nll", "val_nll", "best_step"):
        assert _results(broken)[figure] == _results(full)[figure], figure
    keys = _metric_keys(broken)
    assert len(keys) == len(set(keys)), "a step was logged twice"
    # Every record of the uninterrupted run is there (the interruption adds its own).
    assert {k for k in _metric_keys(full) if k[1] != "checkpoint"} <= set(keys)
    assert "resumed from its last checkpoints" in (broken / "report.md").read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _pair(env: dict, workdir: Path, *extra: str) -> list[subprocess.Popen]:
    flags = ["--coordinator", f"localhost:{_free_port()}", "--num-processes", "2"]
    flags += ["--distributed-timeout", str(PEER_TIMEOUT), *extra]
    return [
        _start(env, workdir, *flags, "--process-id", str(index)) for index in (0, 1)
    ]


@pytest.mark.slow
def test_two_processes_survive_a_killed_peer_and_match_one(
    tmp_path, child_env, reference
):
    two = tmp_path / "two"
    main, peer = _pair(child_env, two, *QUICK)
    _wait_for_checkpoint(main, two, 0)
    peer.kill()
    killed_at = time.monotonic()
    stderr = _finish(main, status=1)
    assert time.monotonic() - killed_at < PEER_TIMEOUT + 30
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("chainlab: error: a peer process died or stopped answering")
    assert last.endswith("--resume (in every process)")
    peer.communicate(timeout=TIMEOUT)

    for process in _pair(child_env, two, "--resume"):
        _finish(process)
    expected, got = _results(reference()), _results(two)
    for figure in ("test_nll", "val_nll"):
        assert got[figure] == pytest.approx(expected[figure], rel=TWO_VS_ONE_RTOL)
    assert got["best_step"] == expected["best_step"]
    assert json.loads((two / "versions.json").read_text())["device_count"] == 2
    keys = _metric_keys(two)
    assert len(keys) == len(set(keys)), "a step was logged twice"

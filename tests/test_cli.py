"""The ``chainlab`` console script, driven as a user would, in a subprocess.

Refusals of bad input happen before any JAX work, so those cases call the script's
``main`` in this process (same code, same output streams, no interpreter start-up);
the other tests start the installed console script itself.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chainlab.runner import cli
from chainlab.runner import configs as config_package
from chainlab.runner import experiments as experiment_package

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
CHAINLAB = Path(sys.executable).parent / "chainlab"


def chainlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CHAINLAB_PATH": str(FIXTURES),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".jax_cache"),
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
    }
    return subprocess.run(
        [str(CHAINLAB), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chainlab: error: ")
    assert pattern in lines[0], lines[0]


def test_list_shows_experiments_with_descriptions():
    result = chainlab("list")
    assert result.returncode == 0
    assert "Toy regression used to test the runner" in result.stdout


def test_show_prints_the_resolved_config():
    result = chainlab("show", "toy", "--variant", "quick", "--set", "model.width=3")
    assert result.returncode == 0
    config = json.loads(result.stdout)
    assert config["steps"] == 40 and config["model"]["width"] == 3


def test_run_from_another_directory(tmp_path):
    workdir = tmp_path / "out"
    result = chainlab(
        "run", "toy", "--variant", "quick", "--workdir", str(workdir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["final_loss"] < 1
    assert (workdir / "results.json").is_file() and (workdir / "report.md").is_file()
    assert str(workdir) in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "toyy"), "unknown experiment 'toyy'; did you mean toy"),
        (("run", "toy", "--set", "stpes=3"), "unknown config key 'stpes'; valid keys"),
        (("run", "toy", "--set", "seed=abc"), "seed expects a int, got 'abc'"),
        (("run", "toy", "--set", "seed"), "--set expects KEY=VALUE"),
        (("run", "toy", "--variant", "big"), "unknown variant 'big' for toy"),
        (("run", "toy", "--config", "nowhere.json"), "does not exist"),
        (("run", "toy", "--resume"), "--resume needs --workdir"),
        (("show", "nope"), "unknown experiment 'nope'"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAINLAB_PATH", str(FIXTURES))
    for package in (experiment_package, config_package):
        monkeypatch.setattr(package, "__path__", list(package.__path__))
    sigterm = signal.getsignal(signal.SIGTERM)  # chainlab run installs its own
    try:
        status = cli.main(list(args))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(args, status, captured.out, captured.err)
    assert_one_line_error(result, message)
    assert result.returncode == 2
    assert not (tmp_path / "runs").exists()


def test_existing_workdir_is_refused_and_untouched(tmp_path):
    (tmp_path / "results.json").write_text('{"old": 1}')
    result = chainlab("run", "toy", "--variant", "quick", "--workdir", str(tmp_path))
    assert_one_line_error(result, "is not empty; nothing was overwritten")
    assert (
        "Use --resume to continue that run or choose a new --workdir" in result.stderr
    )
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert (tmp_path / "results.json").read_text() == '{"old": 1}'


def test_crash_mid_run_says_where_the_partial_output_is(tmp_path):
    workdir = tmp_path / "run"
    result = chainlab(
        "run",
        "toy",
        "--variant",
        "quick",
        "--workdir",
        str(workdir),
        "--set",
        "fail=true",
    )
    assert_one_line_error(result, f"partial output kept in {workdir}")
    assert result.returncode == 1
    assert (workdir / "metrics.jsonl").is_file() and (workdir / "error.txt").is_file()


def test_nan_during_training_names_the_step(tmp_path):
    result = chainlab(
        "run",
        "toy",
        "--variant",
        "quick",
        "--workdir",
        str(tmp_path / "run"),
        "--set",
        "diverge_at_loss=1e-6",
    )
    assert_one_line_error(result, "loss became nan at step")


def test_reproduce_reports_failures_and_writes_report(tmp_path):
    result = chainlab(
        "reproduce",
        "--variant",
        "quick",
        "--only",
        "toy",
        "toy_broken",
        "--workdir",
        str(tmp_path / "all"),
    )
    assert result.returncode == 1
    assert "failed" in result.stdout and "broken on purpose" in result.stdout
    assert (tmp_path / "all" / "REPORT.md").is_file()

"""Runs of several processes on this machine: 2 CPU processes, gloo collectives.

``fit`` on one process against two, and a peer that never arrives. A real
experiment on two processes, one of them killed and the run resumed, is in
``test_resume.py`` (it shares that module's uninterrupted reference run).
"""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from chainlab import distributed
from chainlab.errors import ChainlabError

CHAINLAB = str(Path(sys.executable).parent / "chainlab")
TIMEOUT = 300  # seconds for any one process
# Two processes sum their halves of a batch's gradient in another order than one.
TWO_VS_ONE_RTOL = 1e-5

FIT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import jax, jax.numpy as jnp, numpy as np, optax
    from chainlab import distributed
    from chainlab.training import data_parallel, fit

    coordinator, count, index, out = sys.argv[1:5]
    if int(count) > 1:
        distributed.initialize(coordinator, int(count), int(index), timeout=60)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.asarray([2.0, -1.0, 0.5], np.float32)
    loss_fn = lambda w, batch, key: jnp.mean((batch[0] @ w - batch[1]) ** 2)
    result = fit(loss_fn, jnp.zeros(3), optax.sgd(0.05), (x, y), steps=12,
                 batch_size=8, log_every=1, checkpoint_dir=Path(out) / "checkpoints",
                 metrics_path=Path(out) / "metrics.jsonl")
    # Evaluation over the data axis: a mean (all-reduced) and per-example values
    # (gathered), read in every process.
    square_errors = lambda w, batch: (batch[0] @ w - batch[1]) ** 2
    errors = data_parallel(square_errors)(result.params, (x, y))
    mse = data_parallel(lambda *a: jnp.mean(square_errors(*a)))(result.params, (x, y))
    assert errors.shape == (64,) and errors.is_fully_replicated
    if jax.process_index() == 0:
        losses = [r["loss"] for r in result.history]
        params = np.asarray(jax.device_get(result.params)).tolist()
        summary = {"devices": jax.device_count(), "losses": losses, "params": params,
                   "errors": np.asarray(errors).tolist(), "mse": float(mse)}
        (Path(out) / "result.json").write_text(json.dumps(summary))
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start(child_env):
    """``start(command)``: a subprocess with piped, text output."""

    def start(command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )

    return start


def _finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


def _metric_keys(workdir: Path) -> list[tuple]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r.get("run"), r.get("split"), r["step"]) for r in map(json.loads, lines)]


def test_initialize_refuses_partial_settings_and_a_started_jax():
    jax.devices()  # this process has started JAX
    with pytest.raises(ChainlabError, match="go together"):
        distributed.initialize("localhost:1234", None, 0)
    with pytest.raises(ChainlabError, match="start a fresh Python process"):
        distributed.initialize(f"localhost:{_free_port()}", 2, 0, timeout=5)
    assert distributed.initialize() is False  # no cluster here: one process


@pytest.mark.slow
def test_fit_on_two_processes_follows_one(tmp_path, start):
    script = tmp_path / "fit_script.py"
    script.write_text(FIT_SCRIPT)
    coordinator = f"localhost:{_free_port()}"
    runs = [("1", "0", "one"), ("2", "0", "two"), ("2", "1", "two")]  # count, id, out
    processes = [
        start(
            [
                sys.executable,
                str(script),
                coordinator,
                count,
                index,
                str(tmp_path / out),
            ]
        )
        for count, index, out in runs
    ]
    for process in processes:
        _finish(process)
    one, two = (
        json.loads((tmp_path / name / "result.json").read_text())
        for name in ("one", "two")
    )
    assert (one["devices"], two["devices"]) == (1, 2)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=TWO_VS_ONE_RTOL)
    np.testing.assert_allclose(two["params"], one["params"], rtol=TWO_VS_ONE_RTOL)
    # Squared residuals near zero: the parameters' round-off, absolute.
    np.testing.assert_allclose(
        two["errors"], one["errors"], rtol=TWO_VS_ONE_RTOL, atol=1e-6
    )
    assert two["mse"] == pytest.approx(np.mean(two["errors"]), rel=TWO_VS_ONE_RTOL)
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    keys = [(r["split"], r["step"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == 12 + 4  # process 0's 12 steps, 4 saves


def _experiment(workdir: Path, *extra: str) -> list[str]:
    return [CHAINLAB, "run", "realnvp_moons", "--workdir", str(workdir), *extra]


@pytest.mark.slow
def test_a_peer_that_never_arrives_ends_the_run_with_one_line(tmp_path, start):
    lonely = start(
        _experiment(tmp_path / "run", "--variant", "quick")
        + ["--coordinator", f"localhost:{_free_port()}", "--num-processes", "2"]
        + ["--process-id", "0", "--distributed-timeout", "1"]
    )
    _, stderr = lonely.communicate(timeout=TIMEOUT)
    assert lonely.returncode == 1
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("chainlab: error: not every process arrived in time")
    )

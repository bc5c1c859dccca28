"""The shared training loop: determinism, validation, data parallelism."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from chainlab.compilation import eigen_matmul_options
from chainlab.training import (
    TrainingInterrupted,
    data_parallel,
    default_checkpoint_every,
    fit,
    fit_to_data,
    interleaved_median_ms,
    make_packed_step,
    make_step,
    median_step_ms,
    stepping,
)

# Summation order differs when the batch is split over devices: float32 round-off.
DATA_PARALLEL_RTOL = 1e-5
# Eigen and YNNPACK matrix products sum in different orders: float32 round-off.
EIGEN_VS_YNNPACK_RTOL = 1e-5

PROGRAM = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from chainlab.training import fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(4, 1))).astype(np.float32)

    def loss_fn(params, batch, key):
        xb, yb = batch
        hidden = jnp.tanh(xb @ params["w1"])
        noise = 0.01 * jax.random.normal(key, yb.shape)
        return jnp.mean((hidden @ params["w2"] - yb - noise) ** 2)

    params = {"w1": jnp.full((4, 8), 0.1), "w2": jnp.full((8, 1), 0.1)}
    result = fit(loss_fn, params, optax.adam(1e-2), (x, y), steps=40,
                 batch_size=32, seed=3, log_every=5)
    print(json.dumps({"devices": jax.device_count(),
                      "losses": [r["loss"] for r in result.history]}))
    """
)


def _start(devices: int, child_env: dict) -> subprocess.Popen:
    env = child_env | {"JAX_NUM_CPU_DEVICES": str(devices)}
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _curve(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_two_devices_follow_the_one_device_loss_curve(child_env):
    # Both programs run at once: each spends most of its time importing and compiling.
    processes = _start(1, child_env), _start(2, child_env)
    one, two = (_curve(p) for p in processes)
    assert one["devices"] == 1 and two["devices"] == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=DATA_PARALLEL_RTOL)
    assert one["losses"][-1] < one["losses"][0]


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = x @ np.asarray([2.0, -1.0], np.float32)

    def loss_fn(params, batch, key):
        xb, yb = batch
        return jnp.mean((xb @ params - yb) ** 2)

    return loss_fn, (x, y)


def _fit_problem(**kwargs):
    """``fit`` on :func:`_problem` from zeros, SGD at 0.05, batches of 8."""
    loss_fn, data = _problem()
    return fit(loss_fn, jnp.zeros(2), optax.sgd(0.05), data, batch_size=8, **kwargs)


def _losses(**kwargs) -> list[float]:
    """The loss after every step of a 6-step :func:`_fit_problem`."""
    result = _fit_problem(steps=6, log_every=1, **kwargs)
    return [record["loss"] for record in result.history]


def test_fit_is_deterministic_in_the_seed():
    losses = [_losses(seed=seed) for seed in (0, 0, 1)]
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_select_best_keeps_the_best_evaluation():
    values = iter([3.0, 1.0, 2.0])
    result = _fit_problem(
        steps=6,
        eval_fn=lambda p: {"val": next(values)},
        eval_every=2,
        select_best="val",
    )
    assert result.best_step == 4 and result.step == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be in 1..64"),
        ({"batch_size": 65}, "batch_size must be in 1..64"),
        ({"select_best": "val"}, "select_best needs eval_fn"),
        ({"checkpoint_every": 2}, "checkpoint_every needs a checkpoint_dir"),
        ({"compiler_options": {"xla_no_such_option": "1"}}, "are not accepted"),
    ],
)
def test_fit_refuses_bad_arguments(kwargs, message):
    loss_fn, data = _problem()
    arguments = {"steps": 2, "batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        fit(loss_fn, jnp.zeros(2), optax.sgd(0.1), data, **arguments)


def test_fit_hands_compiler_options_to_the_step_jit(monkeypatch):
    seen = []
    jit = jax.jit

    def recording_jit(fn, **kwargs):
        seen.append((getattr(fn, "__name__", ""), kwargs.get("compiler_options")))
        return jit(fn, **kwargs)

    monkeypatch.setattr(jax, "jit", recording_jit)
    options = {"xla_cpu_use_onednn": False}  # accepted, and changes nothing here
    _fit_problem(steps=2, compiler_options=options)
    assert ("step_fn", options) in seen  # the training step, not just the probe


def test_fit_with_eigen_matmuls_follows_the_default_loss_curve():
    default = _losses(compiler_options={})
    eigen = _losses(compiler_options=eigen_matmul_options())
    np.testing.assert_allclose(eigen, default, rtol=EIGEN_VS_YNNPACK_RTOL)


def test_fit_compiles_its_step_once(tmp_path):
    """Many steps with logging, evaluation, best-selection and checkpoints: the loss
    is traced once (one compiled step)."""
    loss_fn, data = _problem()
    counted = chex.assert_max_traces(loss_fn, n=1)
    options = {
        "steps": 12,
        "batch_size": 8,
        "log_every": 2,
        "eval_fn": lambda p: {"neg_norm": -jnp.sum(p**2)},  # params grow from 0
        "eval_every": 3,
        "select_best": "neg_norm",
        "checkpoint_every": 4,
        "checkpoint_dir": tmp_path,
        "metrics_path": tmp_path / "metrics.jsonl",
    }
    result = fit(counted, jnp.zeros(2), optax.sgd(0.05), data, **options)
    assert result.step == 12 and result.best_step == 12
    assert sorted(int(p.name) for p in (tmp_path / "train").iterdir()) == [8, 12]
    chex.clear_trace_counter()


def _checkpointed(tmp_path, **kwargs):
    """A 12-step :func:`_fit_problem` with checkpoints and metrics in ``tmp_path``."""
    options = {"checkpoint_dir": tmp_path, "metrics_path": tmp_path / "m.jsonl"}
    return _fit_problem(steps=12, log_every=2, **options, **kwargs)


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fit_checkpoints_four_times_by_default_and_refuses_to_overwrite(tmp_path):
    assert default_checkpoint_every(12) == 3 and default_checkpoint_every(1) == 1
    _checkpointed(tmp_path)
    assert sorted(int(p.name) for p in (tmp_path / "train").iterdir()) == [9, 12]
    records = _records(tmp_path / "m.jsonl")
    seconds = [r["seconds"] for r in records if r["split"] == "checkpoint"]
    assert len(seconds) == 4 and min(seconds) > 0
    with pytest.raises(ValueError, match="already holds checkpoints of 'train'"):
        _checkpointed(tmp_path)


def test_sigint_checkpoints_and_resume_is_bit_identical(tmp_path):
    """A SIGINT during training saves the state and raises; resuming continues to
    the very parameters of an uninterrupted run, logging each step once. A kill in
    the middle of appending a metrics line or of writing a checkpoint (orbax's
    temporary folder) does not stop the resume."""
    full = _checkpointed(tmp_path / "full")

    def interrupt(params):
        os.kill(os.getpid(), signal.SIGINT)
        return {"norm": jnp.sum(params**2)}

    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 5 of 12; checkpoint"):
        _checkpointed(run, eval_fn=interrupt, eval_every=5)
    assert (run / "train" / "5").is_dir()
    with open(run / "m.jsonl", "a") as stream:
        stream.write('{"step": 6, "run": "tr')  # cut short by a kill
    (run / "train" / "9.orbax-checkpoint-tmp-1").mkdir()  # an unfinished save
    resumed = _checkpointed(run, resume=True)
    assert (
        jax.device_get(resumed.params).tobytes()
        == jax.device_get(full.params).tobytes()
    )
    keys = [(r["split"], r["step"]) for r in _records(run / "m.jsonl")]
    assert len(keys) == len(set(keys))
    # The interrupted run also logged its partial window and checkpoint at step 5.
    full_keys = {
        (r["split"], r["step"]) for r in _records(tmp_path / "full" / "m.jsonl")
    }
    assert set(keys) - full_keys == {("eval", 5), ("train", 5), ("checkpoint", 5)}

    def train_steps(result):
        return [r["step"] for r in result.history if r["split"] == "train"]

    assert train_steps(resumed) == sorted({*train_steps(full), 5})


def test_fit_takes_the_make_step_step():
    """fit's first step is make_step's on batch 0 with key fold_in(key(seed), 0)."""
    loss_fn, (x, y) = _problem()
    optimizer = optax.sgd(0.05)

    def noisy(params, batch, key):  # the key matters, so it must be the same one
        return loss_fn(params, batch, key) + jax.random.normal(key) * jnp.sum(params)

    result = fit(noisy, jnp.zeros(2), optimizer, (x, y), steps=1, batch_size=8, seed=3)
    rows = np.random.default_rng([3, 0]).permutation(64)[:8]
    key = jax.random.fold_in(jax.random.key(3), 0)
    params, _, metrics = make_step(noisy, optimizer)(
        jnp.zeros(2), optimizer.init(jnp.zeros(2)), (x[rows], y[rows]), key
    )
    chex.assert_trees_all_close(result.params, params, rtol=1e-6)
    assert result.history[-1]["loss"] == pytest.approx(float(metrics["loss"]))


def test_make_step_returns_aux_metrics_and_refuses_bad_options():
    optimizer = optax.sgd(0.5)

    def loss_fn(w, batch, key):
        return jnp.sum((w - batch) ** 2), {"norm": jnp.sum(w**2)}

    step = make_step(loss_fn, optimizer, has_aux=True)
    w, _, metrics = step(jnp.ones(2), optimizer.init(jnp.ones(2)), jnp.zeros(2), None)
    chex.assert_trees_all_close(w, jnp.zeros(2))
    assert set(metrics) == {"loss", "norm"} and float(metrics["loss"]) == 2.0
    with pytest.raises(ValueError, match="are not accepted"):
        make_step(loss_fn, optimizer, compiler_options={"xla_no_such_option": "1"})


def test_packed_step_takes_make_steps_steps_and_spares_the_callers_arrays():
    """Adam after global-norm clipping on a pytree of three leaves, three steps:
    packed or not, the same losses and parameters; the caller's parameters survive
    the packed step's donation."""

    def loss_fn(params, batch, key):
        hidden = jnp.tanh(batch @ params["w1"] + params["b1"][None])
        return jnp.mean((hidden @ params["w2"] - 1.0) ** 2)

    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "w1": jax.random.normal(keys[0], (3, 4)),
        "b1": jnp.ones(4),
        "w2": jax.random.normal(keys[1], (4, 1)),
    }
    batch = jax.random.normal(keys[2], (8, 3))
    optimizer = optax.chain(optax.clip_by_global_norm(0.1), optax.adam(1e-2))
    step = make_step(loss_fn, optimizer)
    packed = make_packed_step(loss_fn, optimizer, params)
    tree, flat = (params, optimizer.init(params)), (packed.params, packed.opt_state)
    for _ in range(3):
        *tree, expected = step(*tree, batch, None)
        *flat, metrics = packed.step(*flat, batch, None)
        assert float(metrics["loss"]) == pytest.approx(float(expected["loss"]))
    chex.assert_trees_all_close(packed.unpack(flat[0]), tree[0], rtol=1e-6)
    assert float(params["b1"].sum()) == 4.0  # not consumed by the first packed call


def test_stepping_threads_the_state_through_its_calls():
    optimizer = optax.sgd(0.25)
    w = jnp.zeros(2)
    step = make_step(lambda w, b, key: jnp.sum((w * b - 1.0) ** 2), optimizer)
    call = stepping(step, w, optimizer.init(w), jnp.ones(2), None)
    assert [float(call()["loss"]) for _ in range(3)] == [2.0, 0.5, 0.125]


def test_fit_refuses_ragged_data():
    loss_fn, _ = _problem()
    with pytest.raises(ValueError, match="disagree on their leading axis"):
        fit(
            loss_fn,
            jnp.zeros(2),
            optax.sgd(0.1),
            (np.zeros((4, 2)), np.zeros(5)),
            steps=1,
            batch_size=2,
        )


def test_data_parallel_is_jit_on_one_device_and_refuses_ragged_batches():
    def weighted(w, batch, scale):
        return scale * jnp.sum(batch["x"] @ w + batch["y"])

    w = jnp.arange(2.0)
    batch = {"x": np.ones((4, 2), np.float32), "y": np.arange(4.0, dtype=np.float32)}
    parallel = data_parallel(weighted, batch_argnums=(1,))
    assert float(parallel(w, batch, 2.0)) == float(jax.jit(weighted)(w, batch, 2.0))
    with pytest.raises(ValueError, match="disagree on their leading axis"):
        parallel(w, {"x": np.ones((4, 2)), "y": np.ones(3)}, 2.0)


def test_median_step_ms_is_positive():
    assert median_step_ms(lambda a: a * 2, jnp.ones(4), warmup=1, repeats=3) > 0


def test_interleaved_median_ms_times_every_call():
    counts = {"a": 0, "b": 0}

    def counted(name):
        def call():
            counts[name] += 1
            return jnp.ones(2) * counts[name]

        return call

    times = interleaved_median_ms({n: counted(n) for n in counts}, repeats=7, block=3)
    assert set(times) == {"a", "b"}
    # Five warm-up calls, seven timed ones, one untimed call opening each block.
    assert counts == {"a": 5 + 7 + 3, "b": 5 + 7 + 3}
    assert all(t.wall_ms > 0 and t.cpu_ms >= 0 for t in times.values())
    with pytest.raises(ValueError, match="repeats and block must be >= 1"):
        interleaved_median_ms({"a": counted("a")}, repeats=0)


def test_patience_stops_training_and_keeps_the_best():
    """The watched metric improves twice, then never: training stops after two
    evaluations without improvement and returns the parameters of the best one."""
    values = iter([3.0, 1.0, 2.0, 2.0, 0.0])
    result = _fit_problem(
        steps=10,
        eval_fn=lambda p: {"v": next(values)},
        eval_every=2,
        select_best="v",
        patience=2,
    )
    assert result.step == 8 and result.best_step == 4
    assert [r["step"] for r in result.history if r["split"] == "eval"] == [2, 4, 6, 8]
    with pytest.raises(ValueError, match="patience needs select_best"):
        _fit_problem(steps=2, patience=1)


def test_fit_to_data_learns_a_gaussian_mean_and_stops_early():
    x = np.random.default_rng(0).normal(3.0, 1.0, size=(400, 2)).astype(np.float32)

    def log_prob(mu, xb):
        return -0.5 * jnp.sum((xb - mu[None]) ** 2, axis=-1) - jnp.log(2 * jnp.pi)

    fitted = fit_to_data(
        log_prob,
        jnp.zeros(2),
        x,
        steps=2000,
        batch_size=50,
        learning_rate=0.1,
        eval_every=20,
        patience=3,
    )
    np.testing.assert_allclose(fitted.params, x.mean(axis=0), atol=0.25)
    assert fitted.steps < 2000  # the validation NLL stopped improving
    assert len(fitted.curve["val_nll"]) == fitted.steps // 20
    assert fitted.curve["step"][-1] == fitted.steps
    with pytest.raises(ValueError, match="val_fraction must be"):
        fit_to_data(log_prob, jnp.zeros(2), x, val_fraction=0.0)


def test_fit_to_data_fits_a_conditional_density_to_pairs():
    rng = np.random.default_rng(1)
    context = rng.normal(size=(400, 1)).astype(np.float32)
    x = (2.0 * context + 0.1 * rng.normal(size=(400, 1))).astype(np.float32)

    def log_prob(slope, xb, cb):  # N(x; slope * c, 0.1^2), up to a constant
        return -0.5 * jnp.sum(((xb - slope * cb) / 0.1) ** 2, axis=-1)

    fitted = fit_to_data(
        log_prob,
        jnp.zeros(()),
        x,
        context=context,
        steps=300,
        batch_size=50,
        learning_rate=0.05,
        eval_every=50,
        patience=None,
    )
    assert abs(float(fitted.params) - 2.0) < 0.05
    with pytest.raises(ValueError, match="disagree on their leading axis"):
        fit_to_data(log_prob, jnp.zeros(()), x, context=context[:10])

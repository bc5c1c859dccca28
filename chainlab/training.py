"""The jitted optax training loop every experiment shares, and its one step.

:func:`make_step` is the one jitted optimizer step of the codebase. ``fit`` draws
mini-batches, takes that step, evaluates now and then, writes metrics, checkpoints with
orbax and stops on a NaN. It is data parallel over every available device: the mesh has
one axis, ``data``; the batch is sharded along it and the parameters and optimizer
state are replicated, so XLA inserts the gradient all-reduce.

Determinism: batch ``s`` is a slice of the permutation ``default_rng([seed, epoch])``
and its PRNG key is ``fold_in(key(seed), s)``, so a resumed run takes exactly the steps
an uninterrupted one would.
"""

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from chainlab.compilation import compiles_with
from chainlab.errors import ChainlabError
from chainlab.losses import cross_entropy
from chainlab.progress import progress
from chainlab.validation import check_at_least, check_in_range, check_positive

__all__ = [
    "CallTime",
    "DensityFit",
    "FitResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "classification_loss",
    "data_mesh",
    "data_parallel",
    "default_checkpoint_every",
    "fit",
    "fit_to_data",
    "interleaved_median_ms",
    "PackedStep",
    "make_packed_step",
    "make_step",
    "median_step_ms",
    "stepping",
    "progress",
]

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch, jax.Array], Any]


class TrainingDiverged(ChainlabError):
    """The loss became NaN or infinite; the message names the step."""


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params: parameters after the last step.
      opt_state: optimizer state after the last step.
      step: number of steps taken.
      history: the logged records, ``{"step", "run", "split", ...metrics}``.
      best_params: parameters at the best evaluation (``select_best``), else ``params``.
      best_step: the step of ``best_params``.
    """

    params: Params
    opt_state: optax.OptState
    step: int
    history: list[dict]
    best_params: Params
    best_step: int


def classification_loss(apply: Callable[[Params, jax.Array], jax.Array]) -> LossFn:
    """The mean cross-entropy loss of a classifier, as :func:`fit` takes it.

    ``apply(params, x_batch) -> logits`` is a Flax linen ``module.apply``, or for Flax
    NNX ``graphdef, state = nnx.split(model)`` with ``lambda s, x: nnx.merge(graphdef,
    s)(x)``. The returned ``loss_fn(params, (x, y), key)`` is
    ``mean_i cross_entropy(apply(params, x)_i, y_i)``, with
    :func:`chainlab.losses.cross_entropy`.

    Example:
      >>> import jax.numpy as jnp
      >>> loss_fn = classification_loss(lambda w, x: x @ w)
      >>> x, y = jnp.ones((4, 3)), jnp.zeros(4, dtype=jnp.int32)
      >>> round(float(loss_fn(jnp.zeros((3, 2)), (x, y), None)), 4)
      0.6931
    """

    def loss_fn(params: Params, batch: tuple[jax.Array, jax.Array], key) -> jax.Array:
        del key  # deterministic
        x, y = batch
        return jnp.mean(cross_entropy(apply(params, x), y))

    return loss_fn


def data_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh named ``data`` over every device of every process (see
    :mod:`chainlab.distributed` for runs of several processes)."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def median_step_ms(fn: Callable, *args, warmup: int = 3, repeats: int = 30) -> float:
    """Median wall time of ``fn(*args)`` in milliseconds, after ``warmup`` calls.

    Each call is waited for (``block_until_ready``), so this is the time of one step,
    compilation excluded.
    """
    _timed(lambda: fn(*args), warmup)
    walls, _ = _timed(lambda: fn(*args), repeats)
    return float(np.median(walls) * 1e3)


def stepping(
    step: Callable, params: Params, opt_state: Any, batch: Batch, key: jax.Array
) -> Callable[[], Any]:
    """A call without arguments that takes ``step`` once from where the last call
    left off: ``(params, opt_state)`` are the previous call's results, ``batch`` and
    ``key`` stay fixed. What :func:`interleaved_median_ms` needs to time a step that
    consumes its inputs (:func:`make_packed_step`); any other step works too.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> loss_fn = lambda w, batch, key: jnp.sum((w * batch - 1.0) ** 2)
      >>> optimizer = optax.sgd(0.25)
      >>> w = jnp.zeros(2)
      >>> step = make_step(loss_fn, optimizer)
      >>> call = stepping(step, w, optimizer.init(w), jnp.ones(2), None)
      >>> [float(call()["loss"]) for _ in range(3)]
      [2.0, 0.5, 0.125]
    """
    state = [params, opt_state]

    def call():
        state[0], state[1], metrics = step(state[0], state[1], batch, key)
        return metrics

    return call


def _timed(fn: Callable[[], Any], count: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``count`` calls of ``fn``, each waited for."""
    walls, cpus = [], []
    for _ in range(count):
        cpu_start, start = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    return walls, cpus


class CallTime(NamedTuple):
    """Median wall time and median process CPU time (all threads) of one call, ms."""

    wall_ms: float
    cpu_ms: float


def interleaved_median_ms(
    calls: dict[Any, Callable[[], Any]], repeats: int, block: int = 25
) -> dict[Any, CallTime]:
    """Median time of every call in ``calls``, the calls taking turns in blocks.

    Each call is waited for (``block_until_ready`` on what it returns). The calls take
    turns in blocks of ``block`` until each has ``repeats`` timings, so all of them are
    sampled over the same stretch of a machine whose speed drifts over seconds, and
    ratios between them stay meaningful. The first call of each block is not timed:
    alternating call by call would make thread pools and caches evict each other,
    which measures the switching, not the call. Five warm-up calls each come first.

    Returns ``{name: CallTime(wall_ms, cpu_ms)}`` for every name of ``calls``; raises
    ``ValueError`` when ``repeats`` or ``block`` is below 1.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones(4)
      >>> times = interleaved_median_ms({"double": lambda: x * 2}, repeats=3)
      >>> times["double"].wall_ms > 0
      True
    """
    if repeats < 1 or block < 1:
        raise ValueError(f"repeats and block must be >= 1, got {repeats} and {block}")
    walls = {name: [] for name in calls}
    cpus = {name: [] for name in calls}
    for fn in calls.values():
        _timed(fn, 5)
    while any(len(times) < repeats for times in walls.values()):
        for name, fn in calls.items():
            _timed(fn, 1)
            block_walls, block_cpus = _timed(fn, min(block, repeats - len(walls[name])))
            walls[name] += block_walls
            cpus[name] += block_cpus
    return {
        name: CallTime(
            float(np.median(walls[name]) * 1e3), float(np.median(cpus[name]) * 1e3)
        )
        for name in calls
    }


def _replicate(tree: Any, sharding: NamedSharding) -> Any:
    """``tree`` as global arrays with a copy on every device of every process (each
    process gives the same values)."""

    def leaf_copy(leaf):
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_process_local_data(sharding, host, host.shape)

    return jax.tree.map(leaf_copy, tree)


def data_parallel(
    fn: Callable[..., Any], *, batch_argnums: int | tuple[int, ...] = 1
) -> Callable[..., Any]:
    """``fn`` compiled to spread its batch over every device of every process.

    The arguments at ``batch_argnums`` (arrays or pytrees of arrays sharing a leading
    axis of length N) are split along that axis over the ``data`` axis of
    :func:`data_mesh`; every process holds the whole batch on its host, as ``fit``'s
    data, and gives only the rows its devices hold. The other arguments (parameters)
    are copied to every device. The results are replicated, so every process reads
    all of them: a mean over the batch (a test NLL, an accuracy) is computed on each
    device's rows and XLA adds the cross-device sum, and a per-example result (an
    attribution map) is gathered. On one device this is ``jax.jit(fn)``, with the same
    numbers; on several, reductions may differ by float round-off.

    Args:
      fn: a function of arrays (pure, jittable).
      batch_argnums: positions of the batch arguments.

    Returns:
      A function with ``fn``'s signature.

    Raises:
      ValueError: (on call) batch arguments whose leading axes differ, or whose length
        is not a multiple of the device count.

    Example:
      >>> mean_square = data_parallel(lambda w, x: jnp.mean((x @ w) ** 2))
      >>> float(mean_square(jnp.ones(2), np.ones((4, 2), np.float32)))
      4.0
    """
    argnums = (batch_argnums,) if isinstance(batch_argnums, int) else batch_argnums
    compiled = {}

    def run(*args):
        mesh = data_mesh()
        if mesh not in compiled:
            compiled[mesh] = jax.jit(fn, out_shardings=NamedSharding(mesh, P()))
        split, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
        size = _dataset_size([args[i] for i in argnums])
        if size % mesh.size:
            raise ValueError(
                f"the batch of {size} rows must split evenly over {mesh.size} devices"
            )
        rows = np.arange(size)[_process_rows(split, size)]
        placed = [
            _global_batch(_host_tree(arg), rows, split, size)
            if i in argnums
            else _replicate(arg, whole)
            for i, arg in enumerate(args)
        ]
        return compiled[mesh](*placed)

    return run


def _host_tree(tree: Any) -> Any:
    return jax.tree.map(_host_array, tree)


def _host_array(leaf: Any) -> np.ndarray:
    """A host view of a data leaf: numpy arrays and memory maps stay as they are
    (batches read only their rows), device arrays are copied once."""
    return leaf if isinstance(leaf, np.ndarray) else np.asarray(leaf)


def _dataset_size(data: Any) -> int:
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"data arrays disagree on their leading axis: {sorted(sizes)}")
    return sizes.pop()


def _batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    per_epoch = n // batch_size
    epoch, slot = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[slot * batch_size : (slot + 1) * batch_size].astype(np.int32)


def _update_fn(loss_fn: LossFn, optimizer: optax.GradientTransformation, has_aux: bool):
    """The optimizer step of :func:`make_step`, not yet jitted (``fit`` wraps it)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def update(params, opt_state, batch, key):
        value, grads = grad_fn(params, batch, key)
        loss, aux = value if has_aux else (value, {})
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, **aux}

    return update


def _check_compiler_options(compiler_options: dict[str, Any] | None) -> None:
    if compiler_options and not compiles_with(compiler_options):
        raise ValueError(
            f"compiler_options {compiler_options} are not accepted by this jaxlib's "
            f"{jax.default_backend()} compiler (see chainlab.compilation)"
        )


def make_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
    compiler_options: dict[str, Any] | None = None,
) -> Callable[[Params, Any, Batch, jax.Array], tuple[Params, Any, dict]]:
    """The jitted optimizer step ``(params, opt_state, batch, key) -> (params,
    opt_state, metrics)``: one gradient of ``loss_fn`` and one ``optimizer`` update.

    ``metrics`` is ``{"loss": loss}``, plus ``loss_fn``'s metrics with ``has_aux``.
    :func:`fit` takes exactly this step, after gathering the batch on the device;
    use this one to time a step or to write a loop of your own. ``loss_fn`` is
    ``loss_fn(params, batch, key)`` as for :func:`fit` (e.g.
    :func:`classification_loss` of an ``apply(params, x_batch)``: a Flax linen
    ``module.apply``, or for Flax NNX ``graphdef, state = nnx.split(model)`` with
    ``lambda s, x: nnx.merge(graphdef, s)(x)``). ``compiler_options`` go to
    ``jax.jit``; options this jaxlib's compiler rejects raise ``ValueError``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> loss_fn = lambda w, batch, key: jnp.sum((batch * w - 1.0) ** 2)
      >>> optimizer = optax.sgd(0.25)
      >>> step = make_step(loss_fn, optimizer)
      >>> w = jnp.zeros(2)
      >>> w, state, metrics = step(w, optimizer.init(w), jnp.ones(2), None)
      >>> w.tolist(), float(metrics["loss"])
      ([0.5, 0.5], 2.0)
    """
    _check_compiler_options(compiler_options)
    step = _update_fn(loss_fn, optimizer, has_aux)
    return jax.jit(step, compiler_options=compiler_options)


class PackedStep(NamedTuple):
    """What :func:`make_packed_step` returns.

    Attributes:
      step: ``(packed, opt_state, batch, key) -> (packed, opt_state, metrics)``; it
        consumes (donates) ``packed`` and ``opt_state``: keep only what it returns.
      params: the initial parameters packed into one vector.
      opt_state: the optimizer's state for them.
      unpack: ``unpack(packed) -> params``, the original pytree.
    """

    step: Callable[[jax.Array, Any, Batch, jax.Array], tuple[jax.Array, Any, dict]]
    params: jax.Array
    opt_state: Any
    unpack: Callable[[jax.Array], Params]


def make_packed_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    *,
    has_aux: bool = False,
    compiler_options: dict[str, Any] | None = None,
) -> PackedStep:
    """:func:`make_step` on the parameters packed into one vector, whose call
    reuses its inputs' memory.

    A jitted call pays for every array that crosses its boundary. With the parameters
    as a pytree, an Adam step of a three-layer MLP takes and returns 19 arrays
    (weights and biases, both moments, the count); packed, 4, and the updates run as
    one fused loop. With its inputs donated (``donate_argnums``) the step also writes
    its results in place. For a network whose step lasts a fraction of a millisecond
    this is measurable: on a 2-core CPU the Jacobian-penalised step of
    ``benchmarks/jacobian_vs_pytorch.py`` (0.4 ms) gets 5-10% faster.

    The parameters are packed with ``jax.flatten_util.ravel_pytree`` (one dtype, the
    leaves' common one) and unpacked inside the step, so ``loss_fn`` sees the pytree.
    Optimizers that treat every entry alike (SGD, Adam, clipping by the global norm)
    take exactly the steps they take on the pytree; ones that label or mask leaves
    (``optax.masked``, ``optax.multi_transform``) need :func:`make_step`.
    ``compiler_options`` this jaxlib's compiler rejects raise ``ValueError``, as for
    :func:`make_step`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> loss_fn = lambda p, batch, key: jnp.sum((p["w"] * batch - 1.0) ** 2)
      >>> packed = make_packed_step(loss_fn, optax.sgd(0.25), {"w": jnp.zeros(2)})
      >>> flat, state = packed.params, packed.opt_state
      >>> flat, state, metrics = packed.step(flat, state, jnp.ones(2), None)
      >>> packed.unpack(flat)["w"].tolist(), float(metrics["loss"])
      ([0.5, 0.5], 2.0)
    """
    _check_compiler_options(compiler_options)
    flat, unpack = ravel_pytree(params)

    def packed_loss(packed, batch, key):
        return loss_fn(unpack(packed), batch, key)

    update = _update_fn(packed_loss, optimizer, has_aux)
    step = jax.jit(update, donate_argnums=(0, 1), compiler_options=compiler_options)
    # A copy: the first call consumes it, never the caller's arrays.
    flat = jnp.array(flat, copy=True)
    return PackedStep(step, flat, optimizer.init(flat), unpack)


def _fit_step(
    loss_fn: LossFn,
    optimizer,
    has_aux: bool,
    seed: int,
    compiler_options: dict[str, Any] | None,
):
    """:func:`make_step` with the batch's key ``fold_in(key(seed), step)``."""
    base_key = jax.random.key(seed)
    update = _update_fn(loss_fn, optimizer, has_aux)

    def step_fn(params, opt_state, batch, step):
        return update(params, opt_state, batch, jax.random.fold_in(base_key, step))

    return jax.jit(step_fn, compiler_options=compiler_options)


def _process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows of every global batch that this process's devices hold."""
    blocks = sharding.addressable_devices_indices_map((batch_size,)).values()
    starts = [block[0].start or 0 for block in blocks]
    stops = [batch_size if block[0].stop is None else block[0].stop for block in blocks]
    return slice(min(starts), max(stops))


def _global_batch(data, indices: np.ndarray, sharding: NamedSharding, size: int):
    """The sharded global batch of ``size`` rows, this process giving ``data[indices]``
    (read from host arrays: the dataset is never copied whole to a device)."""

    def leaf_batch(leaf):
        rows = np.asarray(leaf[indices])
        shape = (size, *rows.shape[1:])
        return jax.make_array_from_process_local_data(sharding, rows, shape)

    return jax.tree.map(leaf_batch, data)


class TrainingInterrupted(ChainlabError):
    """SIGINT or SIGTERM stopped training; the message names the step and checkpoint."""


def default_checkpoint_every(steps: int) -> int:
    """Steps between checkpoints when ``fit`` picks them: four per run, and the end.

    Four checkpoints lose at most a quarter of a run to a crash and cost a few
    tenths of a second each (one orbax save of the training state); the last step is
    always saved, so a resumed run skips fits that had finished.
    """
    return max(1, math.ceil(steps / 4))


class _Checkpoints:
    """Orbax checkpoints of one ``fit`` run: ``checkpoint_dir/<name>/<step>/``.

    Orbax writes a checkpoint into a temporary folder and renames it to ``<step>``
    only once complete, so a process killed mid-save leaves no checkpoint that
    :meth:`latest` would return.
    """

    def __init__(self, directory: Path, every: int):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = directory
        self.every = every
        self.manager = ocp.CheckpointManager(
            directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )

    def latest(self) -> int | None:
        """The last finished checkpoint's step (waiting for one being written)."""
        self.manager.wait_until_finished()
        return self.manager.latest_step()

    def save(self, step: int, state: dict) -> float:
        """Start saving ``state`` as ``step``; the seconds training waited.

        Orbax copies the arrays to host memory and writes them in a background
        thread while training goes on (a save waits for the previous one; ``close``
        for the last), so a checkpoint costs the run little more than the copy.
        """
        start = time.perf_counter()
        self.manager.save(step, args=self._ocp.args.StandardSave(state), force=True)
        return time.perf_counter() - start

    def restore(self, step: int, like: dict) -> dict:
        restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(like))
        return jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(restored))

    def close(self) -> None:
        """Wait for the checkpoint being written, then release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _read_records(path: Path | None) -> list[dict]:
    """The records of a metrics file; a last line cut short by a kill is skipped."""
    if path is None or not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _rewind_metrics(
    path: Path | None, name: str, upto: int, *, write: bool
) -> list[dict]:
    """Drop run ``name``'s records after step ``upto`` from the metrics file (they
    will be logged again; only when ``write``) and return the ones kept, without
    their wall times."""
    records = _read_records(path)
    kept = [r for r in records if r.get("run") != name or r["step"] <= upto]
    if write and path is not None and path.exists():
        _atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    history = [r for r in kept if r.get("run") == name and r["split"] != "checkpoint"]
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _append_record(path: Path, record: dict) -> None:
    """Append one JSON line (numpy and jax scalars as plain numbers, the wall time)."""
    plain = {k: v if isinstance(v, str) else float(v) for k, v in record.items()}
    plain["step"] = int(record["step"])
    plain["time"] = round(time.time(), 3)
    with open(path, "a") as stream:
        stream.write(json.dumps(plain) + "\n")


class _StopSignals:
    """While active (main thread only): SIGINT and SIGTERM set ``received`` instead of
    stopping the process, so the loop can checkpoint and stop between steps."""

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopSignals":
        if self.active:
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._receive)
        return self

    def _receive(self, number, frame) -> None:
        del frame
        self.received = signal.Signals(number).name

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def fit(
    loss_fn: LossFn,
    params: Params,
    optimizer: optax.GradientTransformation,
    data: Any,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    has_aux: bool = False,
    eval_fn: Callable[[Params], dict] | None = None,
    eval_every: int = 0,
    select_best: str | None = None,
    patience: int | None = None,
    log_every: int = 50,
    checkpoint_every: int | None = None,
    metrics_path: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    name: str = "train",
    compiler_options: dict[str, Any] | None = None,
    on_record: Callable[[dict], Any] | None = None,
) -> FitResult:
    """Train ``params`` to minimise ``loss_fn`` over mini-batches of ``data``.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> loss`` (or ``(loss, metrics)`` with
        ``has_aux``); ``batch`` has the structure of ``data`` with ``batch_size`` rows.
      params: initial parameters (any pytree).
      optimizer: an optax transformation.
      data: a pytree of arrays sharing a leading axis of size n >= batch_size.
      steps: total optimizer steps (a resumed run counts the restored ones).
      batch_size: rows per step; must divide evenly over the devices.
      seed: fixes batch order and the per-step PRNG keys.
      eval_fn: ``eval_fn(params) -> {metric: float}``, every ``eval_every`` steps and
        at the end.
      select_best: an ``eval_fn`` metric to minimise; its best params are returned as
        ``best_params``.
      patience: stop once ``select_best`` has not improved for this many
        evaluations (early stopping; counted from the start or the resumed step);
        ``None`` trains all ``steps``.
      log_every: steps between metric records (the only host syncs besides eval and
        checkpoints).
      checkpoint_every: steps between orbax checkpoints; the last step is saved too.
        ``None`` (default) takes :func:`default_checkpoint_every` when a
        ``checkpoint_dir`` is given; 0 turns checkpoints off.
      metrics_path: a JSON-lines file each logged record is appended to, with its
        wall time (``time``, seconds since the epoch); checkpoints add a
        ``split="checkpoint"`` record with the ``seconds`` the save took.
      checkpoint_dir: where orbax checkpoints go (``checkpoint_dir/<name>/<step>/``).
      resume: continue from the latest complete checkpoint of this ``name`` in
        ``checkpoint_dir``; the metrics file's records of ``name`` after it are
        dropped (they are logged again), so each step appears once. Without a
        checkpoint, training starts over.
      name: tells apart several ``fit`` calls of one experiment.
      compiler_options: XLA options for the jitted step (``jax.jit``'s
        ``compiler_options``), e.g. :func:`chainlab.compilation.eigen_matmul_options`.
      on_record: called with every record as it is logged (in process 0 only), e.g.
        a TensorBoard writer's.

    With checkpoints on, SIGINT and SIGTERM stop training between two steps: the
    state is saved and :class:`TrainingInterrupted` raised. Determinism makes a
    resumed run take exactly the steps of an uninterrupted one: on one machine its
    parameters are bit-identical.

    Raises:
      TypeError: a count (steps, log_every, eval_every, checkpoint_every) that is
        not an integer.
      ValueError: a bad argument (steps or log_every below 1, batch size, evaluation
        settings, checkpoints without a checkpoint_dir, a checkpoint_dir that holds
        checkpoints of ``name`` without ``resume``, compiler options the compiler
        rejects).
      TrainingDiverged: the loss became non-finite; the last good checkpoint is kept.
      TrainingInterrupted: SIGINT or SIGTERM arrived; a checkpoint was saved.
    """
    n = _check_fit_arguments(steps, batch_size, data, log_every, eval_every)
    if checkpoint_every is None:
        checkpoint_every = (
            0 if checkpoint_dir is None else default_checkpoint_every(steps)
        )
    check_at_least("checkpoint_every", checkpoint_every, 0)
    mesh = data_mesh()
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of the device count "
            f"{mesh.size}"
        )
    if select_best is not None and not (eval_fn and eval_every):
        raise ValueError("select_best needs eval_fn and eval_every > 0")
    if patience is not None:
        check_at_least("patience", patience, 1)
        if select_best is None:
            raise ValueError("patience needs select_best, the metric to watch")
    if checkpoint_every and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir to write into")
    metrics_path = None if metrics_path is None else Path(metrics_path)
    _check_compiler_options(compiler_options)

    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    rows = _process_rows(batch_sharding, batch_size)
    data = _host_tree(data)
    params = _replicate(params, replicated)
    opt_state = _replicate(optimizer.init(params), replicated)
    step_fn = _fit_step(loss_fn, optimizer, has_aux, seed, compiler_options)
    writes = jax.process_index() == 0  # process 0 writes the metrics file

    best = {"params": params, "step": 0, "value": math.inf}
    start, history = 0, []
    checkpoints = None
    if checkpoint_every:
        checkpoints = _Checkpoints(Path(checkpoint_dir) / name, checkpoint_every)
        latest = checkpoints.latest()
        if latest is not None and not resume:
            checkpoints.close()
            raise ValueError(
                f"{checkpoints.directory} already holds checkpoints of {name!r}: pass "
                "resume=True to continue that run, or another checkpoint_dir or name"
            )
        if resume:
            start = latest or 0
            history = _rewind_metrics(metrics_path, name, start, write=writes)
        if latest is not None:
            state = checkpoints.restore(latest, _state(params, opt_state, best))
            params, opt_state = state["params"], state["opt_state"]
            best = {
                "params": state["best_params"],
                "step": int(state["best_step"]),
                "value": float(state["best_value"]),
            }

    pending: list[tuple[int, dict]] = []

    def record(entry: dict) -> None:
        if entry["split"] != "checkpoint":
            history.append(entry)
        if metrics_path is not None and writes:
            _append_record(metrics_path, entry)
        if on_record is not None and writes:
            on_record(entry)

    def flush(step: int) -> None:
        """Bring buffered step metrics to the host, check them, log their mean."""
        if not pending:
            return
        host = jax.device_get([metrics for _, metrics in pending])
        for (at, _), metrics in zip(pending, host, strict=True):
            if not np.isfinite(metrics["loss"]):
                raise TrainingDiverged(
                    f"{name}: loss became {float(metrics['loss'])} at step {at}"
                    + _checkpoint_hint(checkpoints)
                )
        means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        record({"step": step, "run": name, "split": "train", **means})
        bar.set_postfix(loss=f"{means['loss']:.4g}", refresh=False)
        pending.clear()

    def save(step: int) -> None:
        flush(step)
        seconds = checkpoints.save(step, _state(params, opt_state, best))
        record({"step": step, "run": name, "split": "checkpoint", "seconds": seconds})

    bar = progress(total=steps, desc=name, initial=start, disable=not writes)
    stale, last = 0, steps  # evaluations without improvement; the last step taken
    stop = _StopSignals(active=checkpoints is not None)
    try:
        with stop:
            for step in range(start, steps):
                indices = _batch_indices(step, n, batch_size, seed)[rows]
                batch = _global_batch(data, indices, batch_sharding, batch_size)
                params, opt_state, metrics = step_fn(params, opt_state, batch, step)
                pending.append((step + 1, metrics))
                bar.update()
                done = step + 1
                if done % log_every == 0 or done == steps:
                    flush(done)
                if (
                    eval_fn is not None
                    and eval_every
                    and (done % eval_every == 0 or done == steps)
                ):
                    flush(done)
                    values = {k: float(v) for k, v in eval_fn(params).items()}
                    record({"step": done, "run": name, "split": "eval", **values})
                    if select_best is not None and values[select_best] < best["value"]:
                        best = {
                            "params": params,
                            "step": done,
                            "value": values[select_best],
                        }
                        stale = 0
                    else:
                        stale += 1
                stopping = patience is not None and stale >= patience
                if checkpoints is not None and (
                    done % checkpoint_every == 0
                    or done == steps
                    or stop.received
                    or stopping
                ):
                    save(done)
                if stopping:
                    flush(done)
                    last = done
                    break
                if stop.received:
                    raise TrainingInterrupted(
                        f"{name}: {stop.received} at step {done} of {steps}; "
                        f"checkpoint saved in {checkpoints.directory / str(done)}"
                    )
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.close()
    if select_best is None:
        best = {"params": params, "step": last}
    return FitResult(params, opt_state, last, history, best["params"], best["step"])


class DensityFit(NamedTuple):
    """What :func:`fit_to_data` returns.

    Attributes:
      params: the parameters of the lowest validation NLL.
      best_step: the step they were taken at.
      steps: the steps taken (fewer than asked when early stopping ended training).
      curve: ``{"step", "train_nll", "val_nll"}``, lists at every evaluation.
    """

    params: Params
    best_step: int
    steps: int
    curve: dict[str, list[float]]


def fit_to_data(
    log_prob: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    x: Any,
    *,
    context: Any = None,
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
    val_fraction: float = 0.1,
    eval_every: int = 100,
    patience: int | None = 5,
    seed: int = 0,
    **fit_options: Any,
) -> DensityFit:
    """Fit a density (a normalizing flow) to samples by maximum likelihood, in one call.

    Minimises the mean negative log-likelihood ``-mean_i log_prob(params, x_i)`` over
    mini-batches of a training split, evaluates it on a held-out validation split
    every ``eval_every`` steps, keeps the parameters of the best validation NLL and
    stops after ``patience`` evaluations without improvement (FlowJAX's
    ``fit_to_data`` does the same). ``log_prob(params, x_batch) -> (batch,)``, e.g.
    a :mod:`chainlab.flows` flow's ``flow.log_prob``; with ``context``, a conditional
    density ``log_prob(params, x_batch, context_batch)`` fitted to pairs ``(x_i, c_i)``
    (a flow built with ``context_dim``).

    Args:
      log_prob: the model's log-density of a batch.
      params: initial parameters.
      x: samples, ``(n, ...)``; a shuffled ``val_fraction`` of them is held out.
      context: the samples' conditioning values, ``(n, ...)``, or ``None``.
      steps: the most optimizer steps.
      batch_size: training rows per step.
      learning_rate: Adam's step size (when ``optimizer`` is not given).
      optimizer: an optax transformation instead of Adam.
      val_fraction: the share of ``x`` held out, in (0, 1).
      eval_every: steps between validation evaluations.
      patience: evaluations without improvement before stopping; ``None`` never stops
        early.
      seed: fixes the split, the batch order and the per-step keys.
      **fit_options: passed on to :func:`fit` (``metrics_path``, ``checkpoint_dir``,
        ``name``, ...).

    Raises:
      ValueError: ``val_fraction`` outside (0, 1), and :func:`fit`'s errors.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> x = np.random.default_rng(0).normal(3.0, 1.0, size=(512, 1)).astype("f4")
      >>> def log_prob(mu, xb):  # a unit Gaussian, learnable mean, up to a constant
      ...     return -0.5 * jnp.sum((xb - mu[None]) ** 2, axis=-1)
      >>> fitted = fit_to_data(log_prob, jnp.zeros(1), x, steps=300,
      ...                      batch_size=64, learning_rate=0.1, eval_every=50)
      >>> abs(float(fitted.params[0]) - 3.0) < 0.2
      True
    """
    check_positive("val_fraction", val_fraction)
    check_in_range("val_fraction", val_fraction, 0.0, 1.0)
    data = (np.asarray(x),) if context is None else (np.asarray(x), np.asarray(context))
    size = _dataset_size(data)
    order = np.random.default_rng(seed).permutation(size)
    held_out = max(1, int(round(val_fraction * size)))
    val = tuple(leaf[order[:held_out]] for leaf in data)
    train = tuple(leaf[order[held_out:]] for leaf in data)

    def nll(p, batch):
        return -jnp.mean(log_prob(p, *batch))

    val_nll = jax.jit(lambda p: nll(p, val))
    result = fit(
        lambda p, batch, key: nll(p, batch),
        params,
        optimizer or optax.adam(learning_rate),
        train,
        steps=steps,
        batch_size=min(batch_size, size - held_out),
        seed=seed,
        eval_fn=lambda p: {"val_nll": val_nll(p)},
        eval_every=eval_every,
        select_best="val_nll",
        patience=patience,
        log_every=eval_every,
        **fit_options,
    )
    train_at = {r["step"]: r["loss"] for r in result.history if r["split"] == "train"}
    evals = [r for r in result.history if r["split"] == "eval"]
    curve = {
        "step": [r["step"] for r in evals],
        "train_nll": [train_at.get(r["step"], math.nan) for r in evals],
        "val_nll": [r["val_nll"] for r in evals],
    }
    return DensityFit(result.best_params, result.best_step, result.step, curve)


def _check_fit_arguments(steps, batch_size, data, log_every, eval_every) -> int:
    """Validate ``fit``'s counts; the dataset size."""
    check_at_least("steps", steps, 1)
    check_at_least("log_every", log_every, 1)
    check_at_least("eval_every", eval_every, 0)
    n = _dataset_size(data)
    if not 0 < batch_size <= n:
        raise ValueError(
            f"batch_size must be in 1..{n} (dataset size), got {batch_size}"
        )
    return n


def _checkpoint_hint(checkpoints: "_Checkpoints | None") -> str:
    if checkpoints is None:
        return ""
    kept = checkpoints.latest()
    if kept is None:
        return "; no checkpoint had been written yet"
    return f"; last good checkpoint: step {kept} in {checkpoints.directory}"


def _state(params: Params, opt_state: Any, best: dict) -> dict:
    return {
        "params": params,
        "opt_state": opt_state,
        "best_params": best["params"],
        # Host numpy scalars: a float64 best value restores exactly, so a resumed
        # run selects the same best step as an uninterrupted one.
        "best_step": np.asarray(best["step"], dtype=np.int64),
        "best_value": np.asarray(best["value"], dtype=np.float64),
    }

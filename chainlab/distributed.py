"""Several processes, one run: JAX's distributed runtime, started the chainlab way.

Each process of a multi-process run calls :func:`initialize` before any other JAX
call; afterwards ``jax.devices()`` lists the devices of every process and
:func:`chainlab.training.fit` is data parallel over all of them, each process feeding
only its own rows of every global batch. On the CPU the processes exchange gradients
with gloo collectives.

Three ways to say who the processes are:

- explicitly: ``coordinator="host:port"``, ``num_processes=N``, ``process_id=I``
  (``chainlab run ... --coordinator host:port --num-processes N --process-id I``);
- from a cluster JAX detects itself (SLURM, Open MPI, Kubernetes, Cloud TPU), with no
  arguments;
- not at all: a single process, and :func:`initialize` does nothing.

A peer that never arrives, or dies, ends every process within ``timeout`` seconds
(JAX's initialisation and heartbeat timeouts) instead of hanging.
"""

import os

import jax

from chainlab.errors import ChainlabError

__all__ = [
    "DEFAULT_TIMEOUT",
    "cluster_detected",
    "initialize",
    "is_main_process",
    "process_barrier",
]

DEFAULT_TIMEOUT = 120  # seconds before a missing or silent peer ends the run


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: int = DEFAULT_TIMEOUT,
) -> bool:
    """Join a multi-process run if one is asked for or detected; whether one is.

    Args:
      coordinator: ``"host:port"`` of process 0's coordination service.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      timeout: seconds to wait for every peer to arrive, and without a heartbeat
        from a peer before the run is ended.

    The three are given together or not at all; without them a cluster that JAX
    detects (SLURM, Open MPI, ...) supplies them. Calling again after a successful
    initialisation returns ``True``.

    Raises:
      ChainlabError: only some of the three were given, JAX has already started
        computing in this process (start a fresh one), or the peers did not meet.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = (coordinator, num_processes, process_id)
    if any(value is not None for value in explicit) and None in explicit:
        raise ChainlabError(
            "coordinator, num_processes and process_id go together; got "
            f"{coordinator!r}, {num_processes!r}, {process_id!r}"
        )
    if coordinator is None and not cluster_detected():
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=timeout,
            heartbeat_timeout_seconds=timeout,
        )
    except RuntimeError as error:
        if "before any JAX" not in str(error):
            raise
        raise ChainlabError(
            "a multi-process run must be initialised before any JAX computation; "
            "start a fresh Python process and call chainlab.run (or chainlab."
            "distributed.initialize) first"
        ) from error
    except Exception as error:
        raise ChainlabError(
            f"the {num_processes or 'detected'} processes did not meet within "
            f"{timeout} s: {str(error).splitlines()[0]}"
        ) from error
    return True


def cluster_detected() -> bool:
    """Whether JAX's own cluster detection finds a launcher (SLURM, Open MPI, ...)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    from jax._src import clusters  # JAX's own detection; no public API

    return any(
        not cluster.opt_in_only_method and cluster.is_env_present()
        for cluster in clusters.ClusterEnv._cluster_types
    )


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes a run's files."""
    return jax.process_index() == 0


def process_barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op for one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

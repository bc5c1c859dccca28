"""One line, not a C++ stack trace, when a peer of a multi-process run fails.

When a process of a multi-process run dies or never arrives, JAX's distributed
runtime ends every other process with a fatal log and an abort once its timeout
passes: no Python exception is raised, so nothing in the process itself can explain
what happened. ``chainlab run`` therefore runs a multi-process run's work in a child
process, passes its output through, and replaces that abort by one line saying which
failure it was and how to continue.
"""

import os
import re
import signal
import subprocess
import sys

WORKER = "CHAINLAB_SUPERVISED_WORKER"  # set in the child: it does the work itself
FATAL = "JAX distributed service detected fatal errors"
NEVER_ARRIVED = "RegisterTask"
COORDINATION_ERROR = re.compile(
    r"^E\d{4} .*coordination_service"
)  # the failed call when a peer never connected


def is_worker() -> bool:
    """Whether this process is the child of a supervising ``chainlab run``."""
    return os.environ.get(WORKER) == "1"


def _die_with_parent() -> None:
    """In the child, before it starts: a kill of the supervisor kills it too (Linux
    ``PR_SET_PDEATHSIG``; elsewhere the child outlives a killed supervisor)."""
    if sys.platform.startswith("linux"):
        import ctypes

        set_parent_death_signal = 1
        ctypes.CDLL(None).prctl(set_parent_death_signal, signal.SIGKILL)


def supervise(argv: list[str], resume_hint: str) -> int:
    """Run ``chainlab`` with ``argv`` in a child process; its exit status.

    SIGINT and SIGTERM are passed on to the child, which checkpoints and stops. If
    the child is ended by JAX because a peer failed, print one line (with
    ``resume_hint``, the command that continues the run) and return 1.
    """
    command = [sys.executable, "-m", "chainlab.runner.cli", *argv]
    child = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {WORKER: "1"},
        preexec_fn=_die_with_parent,
    )
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda n, frame: child.send_signal(n))
    dropped: list[str] = []  # from the first error of the runtime on
    for line in child.stderr:
        if dropped or FATAL in line or COORDINATION_ERROR.match(line):
            dropped.append(line)  # the runtime's error log and stack trace
        else:
            sys.stderr.write(line)
            sys.stderr.flush()
    status = child.wait()
    if not any(FATAL in line for line in dropped):
        sys.stderr.writelines(dropped)
        return status if status >= 0 else 128 - status
    if any(NEVER_ARRIVED in line for line in dropped):
        what = "not every process arrived in time"
        hint = "start all of them with the same --coordinator and --num-processes"
    else:
        what, hint = "a peer process died or stopped answering", resume_hint
    print(
        f"chainlab: error: {what}, so JAX ended this process; {hint}", file=sys.stderr
    )
    return 1

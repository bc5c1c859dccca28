"""The ``chainlab`` command line.

::

    chainlab list
    chainlab show NAME [--variant V]
    chainlab run NAME [--variant V] [--config FILE] [--set KEY=VALUE ...]
                      [--workdir DIR] [--resume] [--tensorboard]
                      [--coordinator HOST:PORT --num-processes N --process-id I]
                      [--distributed-timeout SECONDS]
    chainlab reproduce [--variant V] [--only NAME ...] [--workdir DIR]

Problems with the request print one line on stderr and exit with status 2; a failed
experiment exits with status 1 after saying where its partial output is. Ctrl-C
(SIGINT) or SIGTERM during a run checkpoints the training in progress, prints the
command that resumes it, and exits with status 130.
"""

import argparse
import json
import signal
import sys

from chainlab.errors import ChainlabError, ExperimentFailed, RunInterrupted
from chainlab.runner import supervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainlab",
        description="Experiments on the multivariate chain rule, in JAX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="list the experiments")

    show = commands.add_parser("show", help="print an experiment's resolved config")
    show.add_argument("name")
    show.add_argument("--variant", default="", help="'' (paper scale) or 'quick'")
    show.add_argument("--config", dest="config_file", metavar="FILE")
    show.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE"
    )

    run = commands.add_parser("run", help="run one experiment")
    run.add_argument("name")
    run.add_argument("--variant", default="", help="'' (paper scale) or 'quick'")
    run.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="JSON file of config values, e.g. an earlier config.json",
    )
    run.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    run.add_argument("--workdir", help="output folder (default runs/NAME/<time>)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --workdir from its last checkpoint",
    )
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="mirror the metrics to WORKDIR/tensorboard (needs tensorboardX)",
    )
    several = run.add_argument_group(
        "several processes",
        "one run over several processes sharing --workdir (under SLURM, Open MPI "
        "and other clusters JAX detects, no flags are needed)",
    )
    several.add_argument(
        "--coordinator", metavar="HOST:PORT", help="process 0's address"
    )
    several.add_argument("--num-processes", type=int, metavar="N")
    several.add_argument("--process-id", type=int, metavar="I")
    several.add_argument(
        "--distributed-timeout",
        type=int,
        metavar="SECONDS",
        help="end the run when a peer is missing or silent this long (default 120)",
    )

    reproduce = commands.add_parser(
        "reproduce", help="run every experiment and write REPORT.md"
    )
    reproduce.add_argument("--variant", default="", help="'' (paper scale) or 'quick'")
    reproduce.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these experiments"
    )
    reproduce.add_argument(
        "--workdir", help="output folder (default runs/reproduce/<time>)"
    )
    return parser


def _list() -> int:
    from chainlab.runner.registry import describe, list_experiments

    names = list_experiments()
    width = max(map(len, names), default=0)
    for name in names:
        try:
            description = describe(name)
        except Exception as error:  # one broken module must not hide the others
            description = f"(cannot be imported: {type(error).__name__}: {error})"
        print(f"{name:<{width}}  {description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from chainlab.runner.overrides import parse_assignments
    from chainlab.runner.registry import get_config

    config = get_config(
        args.name,
        args.variant,
        overrides=parse_assignments(args.assignments),
        config_file=args.config_file,
    )
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from chainlab.runner.execution import default_workdir, run
    from chainlab.runner.overrides import parse_assignments

    if args.resume and not args.workdir:
        raise ChainlabError("--resume needs --workdir naming the run to continue")
    if args.num_processes and not args.workdir:
        raise ChainlabError("--num-processes needs --workdir, shared by the processes")
    overrides = parse_assignments(args.assignments)
    workdir = args.workdir or default_workdir(args.name)
    resume_hint = f"resume with: chainlab run {args.name} --workdir {workdir} --resume"
    if _several_processes(args) and not supervisor.is_worker():
        return supervisor.supervise(argv, resume_hint + " (in every process)")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    _use_compilation_cache()
    try:
        results = run(
            args.name,
            variant=args.variant,
            overrides=overrides,
            config_file=args.config_file,
            workdir=workdir,
            resume=args.resume,
            tensorboard=args.tensorboard,
            coordinator=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            **_timeout(args),
        )
    except RunInterrupted as error:
        print(f"chainlab: {str(error).split(';')[0]}; {resume_hint}", file=sys.stderr)
        return 130
    print(json.dumps(results, indent=2))
    print(f"chainlab: results and report.md in {workdir}", file=sys.stderr)
    return 0


def _several_processes(args: argparse.Namespace) -> bool:
    """Whether this run is one of several processes (flags, or a detected cluster)."""
    if args.num_processes is not None:
        return True
    from chainlab import distributed

    return distributed.cluster_detected()


def _use_compilation_cache() -> None:
    """Persist compiled programs across runs of the command line, unless the user
    configured a cache (``chainlab.run`` from Python leaves JAX's settings alone)."""
    from pathlib import Path

    import jax

    if jax.config.jax_compilation_cache_dir is None:
        cache = Path.home() / ".cache" / "chainlab" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # Most programs here compile in well under JAX's default 1 s threshold.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


# Errors name chainlab.run's Python arguments; on the command line, their flags.
_FLAGS = (
    ("resume=True", "--resume"),
    ("a new workdir", "a new --workdir"),
    ("variant/overrides/config_file", "--variant/--set/--config"),
    ("needs workdir=", "needs --workdir"),
)


def _as_flags(message: str) -> str:
    for argument, flag in _FLAGS:
        message = message.replace(argument, flag)
    return message


def _timeout(args: argparse.Namespace) -> dict:
    if args.distributed_timeout is None:
        return {}  # chainlab.distributed.DEFAULT_TIMEOUT
    return {"distributed_timeout": args.distributed_timeout}


def _raise_keyboard_interrupt(number, frame) -> None:
    """SIGTERM handled as Ctrl-C: training checkpoints, files are closed properly."""
    raise KeyboardInterrupt(signal.Signals(number).name)


def _reproduce(args: argparse.Namespace) -> int:
    from chainlab import distributed
    from chainlab.runner.reproduction import reproduce

    distributed.initialize()  # joins a cluster JAX detects, as chainlab run does
    _use_compilation_cache()
    outcome = reproduce(variant=args.variant, only=args.only, workdir=args.workdir)
    for name, entry in outcome.experiments.items():
        print(f"{entry['status']:>6}  {entry['seconds']:8.1f} s  {name}")
        if entry["status"] != "ok":
            print(f"        {entry['error']}")
    print(f"chainlab: REPORT.md written to {outcome.workdir}", file=sys.stderr)
    return 0 if outcome.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``chainlab`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    commands = {
        "list": lambda: _list(),
        "show": lambda: _show(args),
        "run": lambda: _run(args, argv),
        "reproduce": lambda: _reproduce(args),
    }
    try:
        return commands[args.command]()
    except ChainlabError as error:
        print(f"chainlab: error: {_as_flags(str(error))}", file=sys.stderr)
        return 1 if isinstance(error, ExperimentFailed) else 2
    except KeyboardInterrupt:
        print("chainlab: interrupted; files written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""What checkpointing costs each training experiment: seconds spent saving / run time.

Runs every experiment that trains with ``chainlab.training.fit`` (default: the quick
variants) and reads the ``split="checkpoint"`` records ``fit`` writes into
``metrics.jsonl``, each with the ``seconds`` its orbax save took (the save is waited
for, so this is the whole cost to the run). Usage::

    python benchmarks/checkpoint_overhead.py                  # quick variants
    python benchmarks/checkpoint_overhead.py --variant ""     # paper scale (long)
    python benchmarks/checkpoint_overhead.py --only realnvp_moons
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import chainlab
from chainlab.runner.report import markdown_table

GOAL = 0.05  # checkpoints cost under 5% of a paper-scale run


def _overhead(name: str, variant: str, root: Path) -> list | None:
    workdir = root / name
    start = time.perf_counter()
    chainlab.run(name, variant=variant, workdir=workdir)
    elapsed = time.perf_counter() - start
    metrics = workdir / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    saves = [r for r in map(json.loads, lines) if r.get("split") == "checkpoint"]
    if not saves:
        return None  # trains nothing with fit
    seconds = sum(r["seconds"] for r in saves)
    fits = len({r["run"] for r in saves})
    return [name, fits, len(saves), seconds / len(saves), elapsed, seconds / elapsed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="quick")
    parser.add_argument("--only", nargs="+", default=chainlab.list_experiments())
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name in args.only:
            row = _overhead(name, args.variant, Path(root))
            if row is not None:
                rows.append(row)
                print(f"{name}: {row[-1]:.1%} of {row[-2]:.1f} s", flush=True)
    header = ["experiment", "fits", "saves", "s per save", "run s", "overhead"]
    print(markdown_table(header, rows))
    worst = max(row[-1] for row in rows)
    verdict = "meets" if worst < GOAL else "misses"
    print(f"worst overhead {worst:.1%}: {verdict} the {GOAL:.0%} goal (paper scale)")


if __name__ == "__main__":
    main()

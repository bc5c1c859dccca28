"""Metrics mirrored to TensorBoard, for watching a run live (optional extra).

``chainlab run ... --tensorboard`` writes every record of ``metrics.jsonl`` also as
TensorBoard scalars under ``WORKDIR/tensorboard``; ``tensorboard --logdir runs`` shows
them. Needs ``tensorboardX`` (``pip install -e '.[tensorboard]'``).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chainlab.errors import ChainlabError

__all__ = ["TensorBoardMirror"]

_NOT_SCALARS = ("step", "run", "split", "time")


class TensorBoardMirror:
    """Writes metric records as scalars tagged ``run/split/metric``."""

    def __init__(self, directory: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ChainlabError(
                "tensorboard=True needs tensorboardX: pip install -e '.[tensorboard]'"
            ) from error
        self.directory = directory
        self._writer = SummaryWriter(logdir=str(directory))

    def write(self, record: Mapping[str, Any]) -> None:
        """Add the record's numbers at its step (and wall time, when it has one)."""
        prefix = "/".join(str(record[k]) for k in ("run", "split") if k in record)
        for name, value in record.items():
            if name not in _NOT_SCALARS and isinstance(value, int | float):
                tag = f"{prefix}/{name}" if prefix else name
                self._writer.add_scalar(
                    tag, value, int(record["step"]), walltime=record.get("time")
                )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

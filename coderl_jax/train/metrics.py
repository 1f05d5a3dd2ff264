"""Training metrics on the host: `metrics.jsonl` and TensorBoard event files in the workdir,
written by process 0 only."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import jax

from coderl_jax.files import atomic_write

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    """Appends one JSON object per logged step to metrics.jsonl and mirrors it to TensorBoard."""

    def __init__(self, workdir: str | Path, enabled: bool | None = None,
                 tensorboard: bool = True):
        self.workdir = Path(workdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = self.workdir / METRICS_FILE
        self._tb = None
        if self.enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (left by a run that was killed after its last checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if int(row.get("step", 0)) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        with atomic_write(self.path) as f:
            f.writelines(kept)

    def write(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(f"{prefix}/{key}", float(value), int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

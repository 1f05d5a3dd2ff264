"""Training metrics on the host: `metrics.jsonl` and TensorBoard event files in the workdir
(local or gs://, see `coderl_jax.paths` and `train.tensorboard`), written by process 0 only."""
from __future__ import annotations

import json
import os
from typing import Mapping

import jax

from coderl_jax import paths
from coderl_jax.files import atomic_write
from coderl_jax.paths import PathLike
from coderl_jax.train.tensorboard import use_epath_for_buckets

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    """Appends one JSON object per logged step to metrics.jsonl and mirrors it to TensorBoard."""

    def __init__(self, workdir: PathLike, enabled: bool | None = None,
                 tensorboard: bool = True, remote_every_s: float = 30.0):
        self.workdir = paths.as_path(workdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = self.workdir / METRICS_FILE
        self._tb = None
        self._rows: paths.Appender | None = None
        self._remote_every_s = remote_every_s
        if self.enabled:
            paths.make_dirs(self.workdir)
            if tensorboard:
                self._tb = summary_writer(self.workdir / "tensorboard", remote_every_s)

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (left by a run that was killed after its last checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if int(row.get("step", 0)) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        self._close_rows()
        with atomic_write(self.path) as f:
            f.writelines(kept)

    def write(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        if self._rows is None:
            self._rows = paths.Appender(self.path, self._remote_every_s)
        self._rows.write(json.dumps(row) + "\n")
        self._rows.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(f"{prefix}/{key}", float(value), int(step))
            self._tb.flush()

    def sync(self) -> None:
        """Make every row written so far durable (a bucket's rows are otherwise uploaded at
        most every `remote_every_s`): called before each checkpoint, so the rows a resumed run
        keeps (those up to its checkpoint) are all there."""
        if self._rows is not None:
            self._rows.flush(force=True)

    def _close_rows(self) -> None:
        if self._rows is not None:
            self._rows.close()
            self._rows = None

    def close(self) -> None:
        self._close_rows()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def summary_writer(folder: PathLike, remote_every_s: float = 30.0):
    """A tensorboardX SummaryWriter for `folder`, local or on a bucket."""
    from tensorboardX import SummaryWriter

    if paths.is_remote(folder):
        use_epath_for_buckets(remote_every_s)
    return SummaryWriter(os.fspath(folder))


def read_metrics(workdir: PathLike) -> list[dict]:
    path = paths.as_path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    with path.open("r", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

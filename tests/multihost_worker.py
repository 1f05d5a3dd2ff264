"""A training process for the subprocess tests (multi-host equality, kill-and-resume).

    python tests/multihost_worker.py WORKDIR --steps N --every K --ici D,F,M

Runs the tiny actor warm-up on synthetic batches with the real Trainer (checkpoints every K
steps, metrics.jsonl every step). Multi-host when CODERL_MULTIHOST=1 (with CODERL_COORDINATOR,
CODERL_NUM_PROCESSES, CODERL_PROCESS_ID); each process feeds only its own rows of each batch.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coderl_jax.train import distributed

BATCH = 16


def build_trainer(workdir, steps: int, every: int, ici, devices=None, progress: bool = False):
    """The Trainer both the workers and the in-process references use."""
    from coderl_jax import partitioning
    from coderl_jax.config import CheckpointConfig, MeshConfig, OptimizerConfig, TrainConfig
    from coderl_jax.train.loop import Trainer, stage_model

    from train_helpers import TINY

    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=tuple(ici)), devices)
    train = TrainConfig(stage="warmup", num_steps=steps, batch_size=BATCH, log_every=1, seed=0,
                        dropout=True)
    return Trainer("warmup", stage_model("warmup", TINY), train,
                   OptimizerConfig(learning_rate=1e-2, warmup_steps=1), mesh, workdir,
                   CheckpointConfig(every_steps=every, keep=2), progress=progress,
                   tensorboard=False)


def host_source(trainer):
    from coderl_jax import partitioning

    from train_helpers import SyntheticSource

    start, stop = partitioning.host_row_range(trainer.mesh, BATCH)
    return SyntheticSource(batch=BATCH, rows=slice(start, stop))


class _Slow:
    """A source that sleeps before each batch (so a test can kill the run mid-way)."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay

    def __iter__(self):
        return self

    def __next__(self):
        import time

        time.sleep(self.delay)
        return next(self.inner)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state):
        self.inner.set_state(state)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--every", type=int, default=0)
    parser.add_argument("--ici", default="-1,1,1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds of sleep per batch")
    args = parser.parse_args()
    distributed.initialize()
    trainer = build_trainer(args.workdir, args.steps, args.every,
                            [int(x) for x in args.ici.split(",")])
    source = host_source(trainer)
    if args.delay:
        source = _Slow(source, args.delay)
    result = trainer.fit(source)
    print(f"process {os.environ.get('CODERL_PROCESS_ID', 0)}: steps {result.start_step}->"
          f"{result.start_step + result.steps_run}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

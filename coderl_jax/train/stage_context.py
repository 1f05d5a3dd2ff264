"""What a stage's batch source is built from: the typed form of the run's settings and objects.

`train/sources.py` makes one per stage and hands it to the stage's source builder
(`rl.critic_train`, `rl.offline`, `rl.online`). Fields past `train` are optional: a test builds
a source from configs alone; `train_stage` adds the run, mesh, model config and workdir.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from coderl_jax.config import DataConfig, ModelConfig, RLConfig, TrainConfig
from coderl_jax.paths import PathLike
from coderl_jax.tokenizer import load_tokenizer


@dataclasses.dataclass
class StageContext:
    """The inputs of one stage's batch source."""

    data: DataConfig
    train: TrainConfig
    tokenizer: Any = None  # loaded from data.tokenizer when None (`load_tokenizer`)
    num_classes: int = 4  # critic classes
    run: Any = None  # train.run.RunConfig (rl, mesh rules, optimizer, ...)
    mesh: Any = None  # jax.sharding.Mesh of the run
    model_config: ModelConfig | None = None  # the network the stage trains
    workdir: PathLike | None = None

    @property
    def rl(self) -> RLConfig:
        return self.run.rl if self.run is not None else RLConfig()

    @property
    def rules(self):
        """The run's logical-axis rules, or None (the defaults)."""
        return self.run.mesh.logical_axis_rules if self.run is not None else None

    def load_tokenizer(self):
        """The given tokenizer, else the one data.tokenizer names (cached here)."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.data.tokenizer or None)
        return self.tokenizer

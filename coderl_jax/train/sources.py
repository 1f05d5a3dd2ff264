"""Batch sources of each stage built from the data config (per-host, checkpointable).

warmup: ground-truth programs of `data.problems` (`data.pipeline`); critic, offline_rl and
online_rl: the sources of `rl.critic_train`, `rl.offline` and `rl.online`, each a function of a
`StageContext` (data, train, tokenizer, num_classes, plus what the caller adds: run, mesh,
model_config, workdir). The online source samples from the live actor, which it gets through
`on_step`.
"""
from __future__ import annotations

from typing import Any

from coderl_jax.config import DataConfig, TrainConfig
from coderl_jax.data import pipeline
from coderl_jax.data.sources import load_problems
from coderl_jax.errors import UserError
from coderl_jax.rl import critic_train, offline, online
from coderl_jax.rl.modes import ModeSource
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.train.stage_context import StageContext

# stage -> fn(StageContext) -> batch source
RL_SOURCES = {
    "critic": critic_train.make_batch_source,
    "offline_rl": offline.make_batch_source,
    "online_rl": online.make_batch_source,
}


def make_source(stage: str, data: DataConfig, train: TrainConfig, tokenizer=None,
                num_classes: int = 4, *, run=None, mesh=None, model_config=None,
                workdir=None) -> Any:
    """This host's checkpointable batch iterator for `stage`."""
    if stage in RL_SOURCES:
        return RL_SOURCES[stage](StageContext(data, train, tokenizer, num_classes, run, mesh,
                                              model_config, workdir))
    if stage != "warmup":
        raise UserError(f"unknown stage {stage!r}")
    if tokenizer is None:
        tokenizer = load_tokenizer(data.tokenizer or None)
    cfg = pipeline.training_config(data, train, num_classes)
    problems = load_problems(data.problems, data.split or None)
    source = pipeline.make_iterator(pipeline.make_batches("warmup", tokenizer, cfg,
                                                          problems=problems), cfg)
    if run is not None and run.rl.mode == "paper_faithful":
        # CodeRL's warm-up batches too: sources EOS-padded to max_source_len, no mask
        source = ModeSource(source, run.rl.mode, tokenizer.eos_id)
    return source

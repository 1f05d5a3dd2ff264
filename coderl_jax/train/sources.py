"""Batch sources of each stage built from the data config (per-host, checkpointable).

warmup: ground-truth programs of `data.problems`; critic: executed program rows
(`data.programs`, with `result`) of those problems; offline_rl: sampled program rows with
`token_returns` or `return`, zipped with ground-truth batches (`gt_*` keys) for the CE part of the
mix; online_rl: a factory registered in `ONLINE_SOURCES` (the RL loop builds it: it needs the
sampler, the sandbox and the current params, which it gets through `on_step`).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import jax

from coderl_jax.config import DataConfig, TrainConfig
from coderl_jax.errors import UserError

# "module:function" factories for the online RL stage: fn(context: dict) -> batch source.
ONLINE_SOURCES: list[str] = ["coderl_jax.rl.online:make_batch_source"]
# Stage -> "module:function" factories fn(context: dict) -> batch source, tried before the
# built-in sources below (the first importable one wins). The CodeRL loop's critic and offline RL
# sources (ground truth as passed, held-out critic accuracy, returns from critic scores,
# rl.mode) wrap the same pipeline batches.
STAGE_SOURCES: dict[str, list[str]] = {
    "critic": ["coderl_jax.rl.critic_train:make_batch_source"],
    "offline_rl": ["coderl_jax.rl.offline:make_batch_source"],
}


class ZipSource:
    """Batches of two sources merged into one (the second's keys get a prefix); checkpointable."""

    def __init__(self, first, second, prefix: str = "gt_"):
        self.first, self.second, self.prefix = first, second, prefix

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        a = next(self.first)
        b = next(self.second)
        out = dict(a)
        out.update({self.prefix + k: v for k, v in b.items()})
        return out

    def get_state(self) -> dict:
        return {"first": self.first.get_state(), "second": self.second.get_state()}

    def set_state(self, state: dict) -> None:
        self.first.set_state(state["first"])
        self.second.set_state(state["second"])


def _pipeline_config(data: DataConfig, train: TrainConfig, num_classes: int = 4):
    from coderl_jax.data.pipeline import PipelineConfig

    per_host = train.batch_size // jax.process_count()
    return PipelineConfig(batch_size=per_host, max_source_len=data.max_source_len,
                          max_target_len=data.max_target_len, seed=data.shuffle_seed,
                          shuffle=True, num_epochs=None, num_classes=num_classes,
                          source_cut=train.source_cut)


def _problems(data: DataConfig):
    from coderl_jax.data.sources import load_problems

    return load_problems(data.problems, data.split or None)


def _rows(data: DataConfig, stage: str) -> list[dict]:
    from coderl_jax.files import read_jsonl

    if not data.programs:
        raise UserError(f"the {stage} stage needs data.programs (a jsonl of executed programs)")
    return read_jsonl(data.programs)


def make_source(stage: str, data: DataConfig, train: TrainConfig, tokenizer=None,
                num_classes: int = 4, context: dict | None = None) -> Any:
    """This host's checkpointable batch iterator for `stage`."""
    from coderl_jax.data import pipeline

    factory = _factory(STAGE_SOURCES.get(stage, []))
    if factory is not None:
        return factory(dict(context or {}, data=data, train=train, tokenizer=tokenizer,
                            num_classes=num_classes))
    if stage == "online_rl":
        return _online_source(dict(context or {}, data=data, train=train, tokenizer=tokenizer))
    if tokenizer is None:
        from coderl_jax.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(data.tokenizer or None)
    cfg = _pipeline_config(data, train, num_classes)
    problems = _problems(data)
    if stage == "warmup":
        source = pipeline.make_iterator(pipeline.make_batches("warmup", tokenizer, cfg,
                                                              problems=problems), cfg)
        run = (context or {}).get("run")
        if run is not None and run.rl.mode == "paper_faithful":
            from coderl_jax.rl.modes import ModeSource

            # CodeRL's warm-up batches too: sources EOS-padded to max_source_len, no mask
            source = ModeSource(source, run.rl.mode, tokenizer.eos_id)
        return source
    if stage == "critic":
        return pipeline.make_iterator(pipeline.make_batches(
            "critic", tokenizer, cfg, problems=problems, rows=_rows(data, stage)), cfg)
    if stage == "offline_rl":
        rl = pipeline.make_iterator(pipeline.make_batches(
            "rl", tokenizer, cfg, problems=problems, rows=_rows(data, stage)), cfg)
        if train.rl_mix == "sum" and train.ce_weight == 0.0:
            return rl
        gt = pipeline.make_iterator(pipeline.make_batches("warmup", tokenizer, cfg,
                                                          problems=problems), cfg)
        # the ground truth of other problems, as CodeRL pairs a random solution with each sample
        return ZipSource(rl, gt)  # gt_encoder_ids, gt_targets, ...
    raise UserError(f"unknown stage {stage!r}")


def _factory(specs: list[str]) -> Callable | None:
    """The first importable "module:function" of `specs`, else None."""
    for spec in specs:
        module, _, name = spec.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        factory = getattr(mod, name, None)
        if factory is not None:
            return factory
    return None


def _online_source(context: dict) -> Any:
    for spec in ONLINE_SOURCES:
        module, _, name = spec.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        factory: Callable | None = getattr(mod, name, None)
        if factory is not None:
            return factory(context)
    raise UserError("the online_rl stage's batch source is not available in this version "
                    f"(looked for {', '.join(ONLINE_SOURCES)})")

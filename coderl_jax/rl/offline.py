"""The offline_rl stage's batch source: CodeRL's RL fine-tuning on pre-generated samples.

As in the paper and `datasets/apps_dataset.py` (tuning_mode='rl'): the samples of
`data.programs` (executed, e.g. a `coderl critic-data` folder) with per-token returns
`(reward - greedy baseline reward) * p_critic(true outcome)` from a frozen critic, each batch
zipped with a batch of ground-truth programs of random problems for the cross-entropy part
(`gt_*` keys; the train step mixes RL and CE as `train.rl_mix` says, alternating in
paper_faithful mode).

Critic scores come from the rows themselves (`token_probs`, as `coderl critic-score` writes them)
or, when `rl.critic_checkpoint` is set and the rows have none, are computed once at the start and
kept in `<workdir>/offline_programs.jsonl` (a resumed run reads that file). Without either, every
token carries the sequence return. Under rl.mode=paper_faithful the samples are CodeRL's RL
data (`programs.coderl_rl_rows`): generate.py prompts and re-tokenised, reindented programs.
"""
from __future__ import annotations

import collections
from typing import Any

from coderl_jax import paths
from coderl_jax.config import RLConfig
from coderl_jax.data import pipeline
from coderl_jax.data.sources import problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.files import read_jsonl, write_jsonl
from coderl_jax.rl import reward
from coderl_jax.rl.modes import ModeSource
from coderl_jax.rl.programs import (
    CODERL_RL_PROMPT_STYLE,
    coderl_rl_config,
    coderl_rl_rows,
    greedy_source_for,
    load_greedy_results,
    stage_inputs,
)
from coderl_jax.rl.rewards import normalize_result, sequence_returns
from coderl_jax.rl.scoring import load_scorer
from coderl_jax.train.stage_context import StageContext

SCORED_FILE = "offline_programs.jsonl"


def greedy_results_for(rl: RLConfig, programs: str) -> dict[str, int] | None:
    """The greedy baseline's results (rl.greedy_programs, else beside data.programs), when the
    baseline needs them."""
    if rl.baseline != "greedy":
        return None
    where = rl.greedy_programs or greedy_source_for(programs)
    if not where:
        raise UserError("rl.baseline='greedy' needs the greedy programs' results: set "
                        "rl.greedy_programs (or use a `coderl critic-data` folder as "
                        "data.programs), or choose rl.baseline='mean_others' or 'none'")
    return load_greedy_results(where)


def scored_rows(rows: list[dict], rl: RLConfig, data, ctx: StageContext, tokenizer,
                problems) -> list[dict]:
    """`rows` with critic `token_probs` (computed once with rl.critic_checkpoint if missing)."""
    import jax

    if not rl.critic_checkpoint or all("token_probs" in r for r in rows):
        return rows
    workdir = ctx.workdir
    cached = paths.as_path(workdir) / SCORED_FILE if workdir is not None else None
    if cached is not None and cached.is_file():
        return read_jsonl(cached)
    faithful = rl.mode == "paper_faithful"
    scorer = load_scorer(rl.critic_checkpoint, mesh=ctx.mesh, rules=ctx.rules,
                         pool_padding=faithful)
    out = reward.critic_token_probs(scorer, rows, problems_by_id(list(problems)), tokenizer,
                                    batch_size=max(8, scorer.row_divisor),
                                    max_source_len=data.max_source_len,
                                    max_target_len=data.max_target_len, mode=rl.mode,
                                    prompt_style=CODERL_RL_PROMPT_STYLE if faithful else "train")
    if cached is not None and jax.process_index() == 0:
        write_jsonl(cached, out)
    return out


def make_batch_source(ctx: StageContext) -> Any:
    """The offline_rl stage's source (see module docstring); `ctx` from train/sources.py."""
    import jax
    import numpy as np

    data, train, run, rl, tokenizer, problems, rows = stage_inputs(
        ctx, "the offline_rl stage needs data.programs (executed sampled programs: "
                 "a `coderl critic-data` folder, critic-score output or a CodeRL layout)")
    if not rows:
        raise UserError(f"no programs in {data.programs}")
    faithful = rl.mode == "paper_faithful"
    if faithful:  # CodeRL's RL samples: re-tokenised targets, generate.py sources
        rows = coderl_rl_rows(rows, tokenizer, data.max_target_len)
    rows = scored_rows(rows, rl, data, ctx, tokenizer, problems)
    greedy = greedy_results_for(rl, data.programs)
    rows = reward.returns(rows, rl.baseline, greedy)
    if jax.process_index() == 0:
        seq = sequence_returns([str(r["problem_id"]) for r in rows],
                               [normalize_result(r["result"]) for r in rows], rl.baseline, greedy)
        dist = sorted(collections.Counter(np.round(seq, 2).tolist()).items())
        scored = sum("token_probs" in r for r in rows)
        print(f"offline RL: {len(rows)} sampled programs ({scored} with critic token scores), "
              f"baseline {rl.baseline}, mode {rl.mode}; sequence returns: "
              + ", ".join(f"{v:+.2f} x{n}" for v, n in dist), flush=True)
    cfg = pipeline.training_config(data, train)
    if faithful:
        cfg = coderl_rl_config(cfg)
    source = pipeline.make_iterator(pipeline.make_batches(
        "rl", tokenizer, cfg, problems=problems, rows=rows), cfg)
    if not (train.rl_mix == "sum" and train.ce_weight == 0.0):
        gt_cfg = pipeline.training_config(data, train)
        gt = pipeline.make_iterator(pipeline.make_batches("warmup", tokenizer, gt_cfg,
                                                          problems=problems), gt_cfg)
        # gt_encoder_ids, gt_targets, ... (CodeRL pairs a random ground truth with each sample)
        source = pipeline.ZipSource(source, gt)
    return ModeSource(source, rl.mode, tokenizer.eos_id)

"""Reward: executed outcomes (plus the critic's token probabilities) -> the learner's RL batch.

The middle of rollout -> reward -> learner (SPEC §5):

1. `execute` runs rows in this process's sandbox pool (asynchronously: a Future of results) and
   `with_results` copies each row with its `result`, `error_type`, ... ;
2. `critic_token_probs` adds the critic's per-token class probabilities (`rl.scoring`), when RL
   weighs returns by a critic;
3. `rl_batch` turns rows into token returns — (reward(result) - baseline) * p_critic(true class)
   (`returns.with_token_returns`, rewards table in `rewards.py`) — and the fixed-shape numpy
   batch (`encoder_ids`, `targets`, `token_returns`, ... as `data.pipeline.Collate` "rl" builds)
   the jitted train step (`train.steps`) takes, fed in the form `rl.mode` says.

Everything but `execute` and `critic_token_probs` is a pure function of its arguments. Online RL
takes all three steps per batch; offline RL takes 2 and `returns` once over its stored rows (then
the data pipeline batches them); critic data and critical sampling take step 1.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Mapping, Sequence

import numpy as np

from coderl_jax.data.pipeline import Collate, PipelineConfig, rl_examples
from coderl_jax.rl.modes import apply_to_batch
from coderl_jax.rl.returns import with_token_returns
from coderl_jax.rl.rewards import CLASS_NAMES, reward
from coderl_jax.rl.scoring import score_rows

RESULT_FIELDS = ("result", "error_type", "tests", "seconds")


def execute(pool, problems_by_id: Mapping, rows: Sequence[dict], progress=None,
            example_tests: bool = False) -> Future:
    """A Future of the sandbox results of `rows` (in row order) from `pool`, on the problems'
    hidden tests (or their example tests)."""
    return pool.submit(problems_by_id, list(rows), example_tests=example_tests,
                       progress=progress)


def with_results(rows: Sequence[dict], results: Sequence[dict],
                 fields: Sequence[str] = RESULT_FIELDS) -> list[dict]:
    """Copies of `rows` carrying the sandbox's `fields` of their results."""
    return [dict(row, **{k: res[k] for k in fields}) for row, res in zip(rows, results)]


def greedy_results(greedy_rows: Sequence[dict], results: Sequence[dict]) -> dict[str, int]:
    """{problem_id: result} of executed greedy (baseline) programs."""
    return {r["problem_id"]: res["result"] for r, res in zip(greedy_rows, results)}


def critic_token_probs(scorer, rows: Sequence[dict], problems_by_id: Mapping, tokenizer, *,
                       batch_size: int, max_source_len: int, max_target_len: int,
                       mode: str, prompt_style: str = "train") -> list[dict]:
    """Rows with the critic's `token_probs` (and `program_ids`, `prompt_ids`, `probs`), each
    program scored after its problem's prompt in `prompt_style`."""
    return list(score_rows(scorer, rows, problems_by_id, tokenizer, batch_size=batch_size,
                           max_source_len=max_source_len, max_target_len=max_target_len,
                           mode=mode, prompt_style=prompt_style))


def returns(rows: Sequence[dict], baseline: str, greedy: Mapping[str, int] | None
            ) -> list[dict]:
    """Rows with their token returns (SPEC §5; `greedy`: the greedy programs' results, read
    only for the "greedy" baseline)."""
    return with_token_returns(rows, baseline, greedy if baseline == "greedy" else None)


def rl_batch(rows: Sequence[dict], problems_by_id: Mapping, tokenizer, *, baseline: str,
             greedy: Mapping[str, int] | None, batch_rows: int, max_source_len: int,
             max_target_len: int, source_cut: str, mode: str, prompt_style: str = "train"
             ) -> dict[str, np.ndarray]:
    """The RL batch of executed rows: token returns with `baseline`, collated to `batch_rows`
    rows after `prompt_style` prompts, as `mode` feeds the step."""
    rows = returns(rows, baseline, greedy)
    cfg = PipelineConfig(batch_size=batch_rows, max_source_len=max_source_len,
                         max_target_len=max_target_len, shuffle=False, num_epochs=1,
                         source_cut=source_cut, prompt_style=prompt_style)
    batch = Collate(tokenizer, cfg, "rl")(rl_examples(problems_by_id, rows))
    return apply_to_batch(batch, mode, tokenizer.eos_id)


def outcome_stats(rows: Sequence[dict], greedy: Mapping[str, int] | None = None) -> dict:
    """Pass rate, mean reward, greedy pass rate (nan without greedy programs) and the count of
    each outcome of executed rows."""
    results = [int(r["result"]) for r in rows]
    counts = {CLASS_NAMES[k + 2]: sum(r == k for r in results) for k in (-2, -1, 0, 1)}
    return {"pass_rate": float(np.mean([r == 1 for r in results])) if results else float("nan"),
            "mean_reward": float(np.mean([reward(r) for r in results])) if results
            else float("nan"),
            "greedy_pass_rate": (float(np.mean([v == 1 for v in greedy.values()]))
                                 if greedy else float("nan")),
            "outcomes": counts}

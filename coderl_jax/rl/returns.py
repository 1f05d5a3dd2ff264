"""Program rows -> token-level returns for the RL loss (SPEC §5, via `rewards.py`).

A row is an executed sampled program: `problem_id`, `result` (SPEC §4), its tokens
(`output_ids`, else the critic's `program_ids`) and optionally the critic's `token_probs`
([t][C], from `coderl critic-score` or the online critic). Its token return at position i is
    (reward(result) - baseline) * p_critic_i(true class of result)
with the baseline of `rewards.sequence_returns` ("greedy": the greedy program of the same problem,
CodeRL's relative return; "mean_others": the mean reward of the problem's other samples in the
same set; "none"), and p = 1 everywhere without critic scores. This is CodeRL's
`sample_rl_task`: `softmax(error_hidden_states)[:, gt_error] * (reward - baseline_reward)`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from coderl_jax.errors import UserError
from coderl_jax.rl.rewards import normalize_result, outcome_class, sequence_returns


def program_tokens(row: Mapping) -> list[int] | None:
    """The token ids a row's returns align with: `output_ids`, else `program_ids`, else None."""
    for key in ("output_ids", "program_ids"):
        ids = row.get(key)
        if ids is not None:
            return list(ids)
    return None


def token_returns_for_rows(rows: Sequence[Mapping], baseline: str = "greedy",
                           greedy_results: Mapping[str, object] | None = None,
                           use_critic: bool = True) -> list[np.ndarray]:
    """One float32 array of token returns per row (length of its program tokens); a scalar
    sequence return for a row with only `code` and no critic scores."""
    if not rows:
        return []
    try:
        results = [normalize_result(r["result"]) for r in rows]
    except KeyError:
        raise UserError("every program row needs 'result' (run the programs' tests first)"
                        ) from None
    except (TypeError, ValueError) as e:
        raise UserError(f"bad 'result' in a program row: {e}") from e
    pids = [str(r["problem_id"]) for r in rows]
    if baseline == "greedy" and greedy_results is None:
        raise UserError("rl.baseline='greedy' needs the greedy programs' results "
                        "(rl.greedy_programs, or a critic-data folder with greedy.jsonl)")
    seq = sequence_returns(pids, results, baseline, greedy_results)  # [n]
    out = []
    for n, (row, ret, result) in enumerate(zip(rows, seq, results)):
        ids = program_tokens(row)
        probs = row.get("token_probs") if use_critic else None
        if ids is None:
            if probs is None:  # code only: one sequence return, spread by the pipeline
                out.append(np.float32(ret))
                continue
            ids = [0] * len(probs)
        values = np.full((len(ids),), ret, np.float32)  # [t]
        if probs is not None:
            probs = np.asarray(probs, np.float32)  # [t', C]
            if probs.ndim != 2:
                raise UserError(f"program row {n}: 'token_probs' must be a [tokens][classes] list")
            cls = outcome_class(result, probs.shape[1])
            p_true = np.zeros((len(ids),), np.float32)
            m = min(len(ids), probs.shape[0])  # positions past the scored length carry nothing
            p_true[:m] = probs[:m, cls]
            values = values * p_true
        out.append(values)
    return out


def with_token_returns(rows: Sequence[Mapping], baseline: str = "greedy",
                       greedy_results: Mapping[str, object] | None = None,
                       use_critic: bool = True) -> list[dict]:
    """Copies of `rows` carrying `token_returns` (lists) and `output_ids` (the tokens they align
    with), ready for the data pipeline's RL stage."""
    returns = token_returns_for_rows(rows, baseline, greedy_results, use_critic)
    out = []
    for row, values in zip(rows, returns):
        new = dict(row)
        ids = program_tokens(row)
        if np.ndim(values) == 0:
            new["return"] = float(values)
        else:
            if ids is not None:
                new["output_ids"] = ids
            new["token_returns"] = values.tolist()
        out.append(new)
    return out

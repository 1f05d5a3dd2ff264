"""Critic / RL training data: N sampled programs and one greedy program per problem, executed.

CodeRL's recipe (`generate.py` with sampling, then its unit-test scripts): for each training
problem sample N programs (paper: 20; temperature 0.6, top-p 0.95 and top-k 50 as its generate.sh
ran with transformers 4.16; at most 511 new tokens, as its max_length=512 counts the start) from the
warmed-up actor plus one greedy program (the baseline of relative returns), run every program
against the problem's unit tests, keep `result` / `error_type`. `generate_critic_data` writes,
under OUT:

    programs.jsonl                      one row per sample: SPEC §3 generate + run-tests fields
    greedy.jsonl                        one row per problem: the greedy program
    <problem_id>/gen_solutions.json     CodeRL's layout (`coderl_layout.write_layout`)
    <problem_id>/baseline_solutions.json
    array_record/                       a TFDS dataset (splits `samples`, `greedy`), no TensorFlow
    summary.json                        counts per outcome, cache hits, seconds

Every file is written atomically. Identical programs of one problem run once (the pool's cache).
Sampling is `rl.rollout`, execution `rl.reward`. On several processes the sampler runs over the
whole mesh, each process executes its contiguous share of the problems in its own pool, and
process 0 gathers the rows (`summary.json` then lists each host's pool under `hosts`) and writes
the files: the same rows as one process writes.
"""
from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from etils import epath

from coderl_jax import paths
from coderl_jax.checkpoint_io import load_actor
from coderl_jax.data.sources import problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.execution.pool import ExecutionPool
from coderl_jax.files import write_json, write_jsonl
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.paths import PathLike
from coderl_jax.rl import reward
from coderl_jax.rl.coderl_layout import write_layout
from coderl_jax.rl.programs import GREEDY_FILE, SAMPLES_FILE, TFDS_DIR
from coderl_jax.rl.programs_tfds import write_tfds
from coderl_jax.rl.rewards import CLASS_NAMES
from coderl_jax.rl.rollout import Rollout, RolloutConfig, host_share
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.train.distributed import gather_objects

# ------------------------------------------------------------------------------- sampling


def sample_rows(config, params, problems: Sequence, tokenizer, *, num_samples: int,
                sampling, mesh=None, batch_size: int = 8, max_new_tokens: int = 512,
                max_source_len: int = 600, seed: int = 0, progress: bool = False) -> list[dict]:
    """`coderl generate` rows (SPEC §3) of `num_samples` programs per problem (`rl.rollout`)."""
    rollout = Rollout(config, params, tokenizer, RolloutConfig(
        sampling=sampling, batch_size=batch_size, max_new_tokens=max_new_tokens,
        max_source_len=max_source_len), mesh=mesh)
    bar = _bar(len(problems) * num_samples, "sample" if not sampling.is_greedy else "greedy",
               progress)
    rows = rollout.run(list(problems), num_samples, seed, progress=bar.update)
    bar.close()
    return rows


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="prog", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


def execute_rows(pool, problems_by_id: dict, rows: list[dict], desc: str = "execute",
                 progress: bool = False) -> list[dict]:
    """Rows with the sandbox's `result`, `error_type`, `tests`, `seconds` added."""
    bar = _bar(len(rows), desc, progress)
    results = reward.execute(pool, problems_by_id, rows, progress=bar.update).result()
    bar.close()
    return reward.with_results(rows, results)


# ------------------------------------------------------------------------------- the dataset


def generate_critic_data(actor: str | tuple, problems: Sequence, out: PathLike, *,
                         tokenizer=None, num_samples: int = 20, temperature: float = 0.6,
                         top_p: float = 0.95, top_k: int = 50, max_new_tokens: int = 511,
                         max_source_len: int = 600, batch_size: int = 8, seed: int = 0,
                         workers: int = 2, timeout: float = 4.0, mesh=None,
                         greedy: bool = True, tfds: bool = True,
                         progress: bool = True, harness: str = "real") -> dict:
    """Sample, execute and write the critic data of `problems` under `out` (module docstring).

    `actor`: a checkpoint path, or `(model_config, params)`. Returns the summary dict.
    """
    if num_samples < 1:
        raise UserError(f"num_samples must be >= 1, got {num_samples}")
    if not problems:
        raise UserError("no problems to make critic data for")
    if tokenizer is None:
        tokenizer = load_tokenizer()
    if isinstance(actor, (str, Path, epath.Path)):
        config, params = load_actor(str(actor), mesh)
    else:
        config, params = actor
    t0 = time.perf_counter()
    common = dict(mesh=mesh, batch_size=batch_size, max_new_tokens=max_new_tokens,
                  max_source_len=max_source_len, seed=seed, progress=progress)
    samples = sample_rows(config, params, problems, tokenizer, num_samples=num_samples,
                          sampling=SamplingConfig(temperature=temperature, top_p=top_p,
                                                  top_k=top_k), **common)
    greedy_rows = (sample_rows(config, params, problems, tokenizer, num_samples=1,
                               sampling=SamplingConfig(greedy=True), **common) if greedy else [])
    t_sample = time.perf_counter() - t0
    table = problems_by_id(list(problems))
    t1 = time.perf_counter()
    # several processes: each executes its share of the problems in its own pool
    mine = {p.problem_id for p in host_share(list(problems), jax.process_index(),
                                             jax.process_count(), even=False)}
    samples = [r for r in samples if r["problem_id"] in mine]
    greedy_rows = [r for r in greedy_rows if r["problem_id"] in mine]
    with ExecutionPool(workers=workers, timeout=timeout, harness=harness) as pool:
        samples = execute_rows(pool, table, samples, "execute", progress)
        greedy_rows = execute_rows(pool, table, greedy_rows, "execute greedy", progress)
        cache = pool.stats()
    t_exec = time.perf_counter() - t1
    hosts = gather_objects({"samples": samples, "greedy": greedy_rows, "pid": os.getpid(),
                            "cache_hits": cache["cache_hits"],
                            "cache_misses": cache["cache_misses"],
                            "execute_seconds": round(t_exec, 3)})
    samples = [r for h in hosts for r in h.pop("samples")]  # process order = problem order
    greedy_rows = [r for h in hosts for r in h.pop("greedy")]
    hits, misses = sum(h["cache_hits"] for h in hosts), sum(h["cache_misses"] for h in hosts)
    summary = {"problems": len(problems), "samples": len(samples), "greedy": len(greedy_rows),
               "outcomes": outcome_counts(samples), "greedy_outcomes": outcome_counts(greedy_rows),
               "sample_pass_rate": _pass_rate(samples), "greedy_pass_rate": _pass_rate(greedy_rows),
               "cache_hits": hits, "cache_misses": misses,
               "cache_hit_rate": hits / max(hits + misses, 1),
               "sample_seconds": round(t_sample, 3),
               "execute_seconds": max(h["execute_seconds"] for h in hosts)}
    if len(hosts) > 1:
        summary["hosts"] = [dict(h, process=i) for i, h in enumerate(hosts)]
    if jax.process_index() != 0:
        return summary
    out = paths.as_path(out)
    write_jsonl(out / SAMPLES_FILE, samples)
    if greedy_rows:
        write_jsonl(out / GREEDY_FILE, greedy_rows)
    write_layout(out, samples, greedy_rows)
    if tfds:
        write_tfds(out / TFDS_DIR, samples, greedy_rows)
    write_json(out / "summary.json", summary)
    return summary


def outcome_counts(rows: Sequence[dict]) -> dict[str, int]:
    counts = collections.Counter(int(r["result"]) for r in rows)
    return {CLASS_NAMES[k + 2]: counts.get(k, 0) for k in (-2, -1, 0, 1)}


def _pass_rate(rows: Sequence[dict]) -> float | None:
    return float(np.mean([int(r["result"]) == 1 for r in rows])) if rows else None

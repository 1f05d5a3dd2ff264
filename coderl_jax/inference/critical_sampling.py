"""Critical sampling (CodeRL §3.3): sample, test on the example tests, refine or repair, repeat.

Per problem, round 0 samples N programs from the actor (or takes N given rows) and runs them on
the problem's example tests; every program is scored by the critic. Each later round r = 1..R
looks at round r-1's programs:
- refine, when some passed the example tests: each distinct passing program (distinct
  `output_ids`) is cut at its highest-scoring token — the critic's per-token P(passed) over the
  program's decoder positions, from one teacher-forced forward pass (`ProgramScorer`); the seed is
  the program's tokens up to and including that position (EOS excluded) — and the actor
  regenerates from the seed as a forced prefix. The N new programs are split over the seeds,
  best seed first: `N // P` each and one more for the first `N % P` (`allocate`), so each seed is
  upsampled N/|passing| times and the round holds exactly N programs.
- repair, when none passed: the top-M failing programs (distinct code) by the critic's P(passed)
  of the whole program are each regenerated `allocate(N, M)` times by the repair model (the actor
  itself unless one is given) from the repair prompt (`inference/repair.py`): the problem, the
  program, its example-test outcome and error message.
- problems without example tests get N plain samples per round (their filter passes vacuously).
Ties (seed scores, critic scores) go to the earlier sample. Only example-test outcomes steer the
rounds; hidden tests are run on every program for evaluation only.

Every program is one row (SPEC §3 plus): `problem_id`, `sample_index` (round r holds
r*N .. r*N+N-1), `round`, `origin` (sample | refine | repair), `parent` (sample_index of the seed
or repaired program, else null), `seed_len` (forced prefix tokens; 0 unless refine),
`prompt_ids` (the source the program was sampled from: the repair prompt for repairs),
`output_ids`, `code`, `logprob`, `critic_score` (P(passed) of the program given the problem),
`example_result` / `example_error_type` / `example_error_message` / `example_error_line`, and the
hidden-test `result`, `error_type`, `tests`, `seconds`, `error_message`, `error_line`,
`difficulty`. `coderl evaluate --results OUT.jsonl` reads them directly (pass@k; n@k filtered by
`example_result`, ranked by `critic_score`).

Randomness: sample i of a problem is drawn with the sampler's per-(problem id, sample index) key,
so results do not depend on batching, blocks or resumption.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np

from coderl_jax import checkpoint_io
from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.data.prompts import program_code, truncate_prompt
from coderl_jax.data.records import Problem
from coderl_jax.errors import UserError
from coderl_jax.evaluation import ProblemSamples, summarize
from coderl_jax.execution.pool import ExecutionPool
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.inference.repair import Failure, RepairFormat, repair_prompt
from coderl_jax.inference.sampler import SOURCE_BUCKETS, Sampler, SampleRequest, bucket
from coderl_jax.rl import reward, rollout
from coderl_jax.rl.scoring import CriticScorer as BatchScorer
from coderl_jax.train.distributed import gather_objects

ORIGINS = ("sample", "refine", "repair")
PASSED = 1
RESULT_FIELDS = ("result", "error_type", "tests", "seconds", "error_message", "error_line")
TARGET_BUCKETS = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class CriticalSamplingConfig:
    """Settings of a critical-sampling run (the CLI's flags and configs/critical_sampling_*)."""

    num_samples: int = 200  # N: programs per problem per round
    rounds: int = 1  # refine/repair rounds after the initial sampling
    top_m: int = 5  # M: failing programs repaired per problem
    temperature: float = 0.6  # CodeRL's generate.sh
    top_p: float = 0.95  # CodeRL's generate.py
    top_k: int = 50  # transformers 4.16 `generate`'s silent default, which CodeRL ran with
    max_new_tokens: int = 511  # CodeRL's max_length=512 counts the decoder start token
    max_source_len: int = 600
    repair_max_source_len: int = 1024  # repair prompts hold a program and an error too
    max_target_len: int = 512  # program tokens the critic reads
    batch_size: int = 8  # (problem, sample) rows per sampler call
    critic_batch_size: int = 16
    critic_pool_padding: bool = False  # CodeRL's max-pool over padding too
    seed: int = 0
    workers: int = 2  # sandbox processes
    timeout: float = 4.0  # seconds per test
    block_size: int = 16  # problems taken through every round together before rows are written
    max_program_chars: int = 4000  # repair prompt: program cut
    max_error_chars: int = 500  # repair prompt: error message cut

    def __post_init__(self):
        for name in ("num_samples", "top_m", "max_new_tokens", "max_source_len",
                     "repair_max_source_len", "max_target_len", "batch_size",
                     "critic_batch_size", "workers", "block_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rounds < 0:
            raise UserError(f"rounds must be >= 0, got {self.rounds}")
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise UserError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UserError(f"top_k must be >= 0, got {self.top_k}")
        if not self.timeout > 0:
            raise UserError(f"timeout must be > 0, got {self.timeout}")

    @property
    def total_per_problem(self) -> int:
        return self.num_samples * (self.rounds + 1)

    @property
    def repair_format(self) -> RepairFormat:
        return RepairFormat(self.max_program_chars, self.max_error_chars)


# ---- pure bookkeeping ---------------------------------------------------------------------------

def allocate(total: int, parts: int) -> list[int]:
    """Split `total` samples over `parts` sources: total // parts each, +1 for the first
    total % parts (sources are given best first). Sums to `total` exactly."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    q, r = divmod(total, parts)
    return [q + (i < r) for i in range(parts)]


def best_cut(token_pass: Sequence[float], output_ids: Sequence[int], eos_id: int,
             max_len: int | None = None) -> int:
    """Seed length for a program: 1 + the position of its highest critic P(passed) token.

    Positions considered: the program's tokens except a final EOS (and at most `max_len`);
    `token_pass[t]` is the critic's P(passed) at decoder position t, aligned with
    `output_ids[t]`. The first maximum wins. 0 when there is no candidate position.
    """
    n = len(output_ids) - (1 if output_ids and output_ids[-1] == eos_id else 0)
    n = min(n, len(token_pass), max_len if max_len is not None else n)
    if n <= 0:
        return 0
    return int(np.argmax(np.asarray(token_pass[:n], dtype=np.float64))) + 1


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one problem's next round samples: `origin`, and per source (a parent program, or
    None for plain samples) its seed/prompt and how many programs."""

    origin: str
    sources: tuple[dict, ...]  # {"parent": int|None, "count": int, "seed": [int], "score": f}


def plan_round(prev: Sequence[dict], num_samples: int, top_m: int, eos_id: int,
               has_example_tests: bool = True, max_seed_len: int | None = None) -> Plan:
    """Refine / repair / plain plan of a problem's next round from its previous round's rows.

    Rows need `sample_index`, `output_ids`, `code`, `example_result`, `critic_score` and, for
    passing ones, `_token_pass` (per-token P(passed)).
    """
    if not has_example_tests:
        return Plan("sample", ({"parent": None, "count": num_samples, "seed": [],
                                "score": None},))
    passing, seen = [], set()
    for row in sorted(prev, key=lambda r: r["sample_index"]):
        key = tuple(row["output_ids"])
        if row["example_result"] == PASSED and key not in seen:
            seen.add(key)
            passing.append(row)
    if passing:
        seeds = []
        for row in passing:
            cut = best_cut(row["_token_pass"], row["output_ids"], eos_id, max_seed_len)
            score = float(row["_token_pass"][cut - 1]) if cut else float("-inf")
            seeds.append({"parent": row["sample_index"], "seed": list(row["output_ids"][:cut]),
                          "score": score})
        seeds.sort(key=lambda s: -s["score"])  # stable: ties keep sample order
        counts = allocate(num_samples, len(seeds))
        return Plan("refine", tuple(dict(s, count=c) for s, c in zip(seeds, counts) if c))
    failing, seen_code = [], set()
    for row in sorted(prev, key=lambda r: r["sample_index"]):
        if row["code"].strip() not in seen_code:
            seen_code.add(row["code"].strip())
            failing.append(row)
    failing.sort(key=lambda r: -float(r["critic_score"]))
    top = failing[:top_m]
    counts = allocate(num_samples, len(top))
    return Plan("repair", tuple({"parent": r["sample_index"], "count": c, "seed": [],
                                 "score": float(r["critic_score"])}
                                for r, c in zip(top, counts) if c))


# ---- critic -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CriticScore:
    """Critic outputs for one program: class probabilities and per-position probabilities."""

    probs: np.ndarray  # [classes]
    token_probs: np.ndarray  # [program length (cut to max_target_len), classes]

    @property
    def pass_prob(self) -> float:
        return float(self.probs[-1])  # last class = passed (binary and 4-class critics)

    @property
    def token_pass(self) -> np.ndarray:
        return self.token_probs[:, -1]


class ProgramScorer:
    """The critic's outcome probabilities per program and per program token, batched and jitted.

    Input as in critic training: the problem's prompt ids (cut to `max_source_len`, EOS kept)
    and the program's ids unchanged (cut to `max_target_len`) as decoder targets; decoder inputs
    are `shift_right(targets)`, so position t has read the start token and ids[:t].
    """

    def __init__(self, config: ModelConfig, critic_config: CriticConfig, params: Any, *,
                 batch_size: int = 16, max_source_len: int = 600, max_target_len: int = 512,
                 pool_padding: bool = False, mesh=None):
        self.config, self.critic_config = config, critic_config
        self.max_source_len, self.max_target_len = int(max_source_len), int(max_target_len)
        self.forward = BatchScorer(config, critic_config, params, mesh=mesh,
                                   pool_padding=pool_padding)  # the jitted batch forward
        shards = self.forward.row_divisor
        self.batch_size = -(-int(batch_size) // shards) * shards

    def score(self, prompt_ids: Sequence[Sequence[int]],
              program_ids: Sequence[Sequence[int]]) -> list[CriticScore]:
        """One CriticScore per (prompt, program) pair, in order."""
        if len(prompt_ids) != len(program_ids):
            raise ValueError("prompt_ids and program_ids differ in length")
        eos = self.config.eos_token_id
        srcs = [truncate_prompt(p, self.max_source_len, eos) for p in prompt_ids]
        tgts = [list(p)[: self.max_target_len] for p in program_ids]
        order = sorted(range(len(tgts)), key=lambda i: (len(tgts[i]), len(srcs[i])))
        out: list[CriticScore | None] = [None] * len(tgts)
        b = self.batch_size
        for start in range(0, len(order), b):
            idx = order[start: start + b]
            s = bucket(max(max(len(srcs[i]) for i in idx), 1), SOURCE_BUCKETS,
                       self.max_source_len)
            t = bucket(max(max(len(tgts[i]) for i in idx), 1), TARGET_BUCKETS,
                       self.max_target_len)
            enc_ids = np.zeros((b, s), np.int32)
            enc_mask = np.zeros((b, s), np.int32)
            targets = np.zeros((b, t), np.int32)
            target_mask = np.zeros((b, t), np.int32)
            enc_ids[:, 0], enc_mask[:, 0], target_mask[:, 0] = eos, 1, 1  # padding rows
            for r, i in enumerate(idx):
                enc_ids[r], enc_mask[r] = 0, 0
                enc_ids[r, : len(srcs[i])], enc_mask[r, : len(srcs[i])] = srcs[i], 1
                targets[r, : len(tgts[i])] = tgts[i]
                target_mask[r] = 0
                target_mask[r, : max(len(tgts[i]), 1)] = 1
            probs, token_probs = self.forward.score_batch(  # [b, c], [b, t, c]
                {"encoder_ids": enc_ids, "encoder_mask": enc_mask, "targets": targets,
                 "target_mask": target_mask})
            for r, i in enumerate(idx):
                out[i] = CriticScore(probs[r].astype(np.float64),
                                     token_probs[r, : len(tgts[i])].astype(np.float64))
        return out  # type: ignore[return-value]


# ---- the rounds ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Models:
    """What critical sampling runs: actor, critic and optional repair model (config, params)."""

    actor_config: ModelConfig
    actor_params: Any
    critic_config: ModelConfig
    critic_head: CriticConfig
    critic_params: Any
    repair_config: ModelConfig | None = None
    repair_params: Any = None


def load_models(actor: str, critic: str, repair: str | None = None, mesh=None) -> Models:
    """Actor, critic and optional repair model from checkpoints (model folders or workdirs)."""
    actor_cfg, actor_params = checkpoint_io.load_actor(actor, mesh)
    critic_params, critic_cfg, head = checkpoint_io.load_model(critic)
    if head is None:
        raise UserError(f"{critic} is an actor checkpoint; --critic needs a critic "
                        "(trained with train.stage=critic)")
    models = Models(actor_cfg, actor_params, critic_cfg, head, critic_params)
    if repair:
        models.repair_config, models.repair_params = checkpoint_io.load_actor(repair, mesh)
    for name, c in (("critic", critic_cfg), ("repair model", models.repair_config)):
        if c is not None and c.vocab_size != actor_cfg.vocab_size:
            raise UserError(f"the {name}'s vocabulary ({c.vocab_size}) differs from the actor's "
                            f"({actor_cfg.vocab_size})")
    return models


def has_example_tests(problem: Problem) -> bool:
    return problem.example_tests is not None and len(problem.example_tests) > 0


def public_row(row: dict) -> dict:
    """A row as written: in-memory fields (leading underscore) dropped."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


class CriticalSampler:
    """Runs critical sampling over problems (see the module docstring)."""

    def __init__(self, models: Models, tokenizer, cfg: CriticalSamplingConfig, *, mesh=None,
                 pool=None):
        self.cfg, self.tokenizer, self.models = cfg, tokenizer, models
        sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
        kw = dict(mesh=mesh, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                  sampling=sampling)
        self.actor = Sampler(models.actor_config, models.actor_params,
                             max_source_len=cfg.max_source_len, **kw)
        if models.repair_config is not None:
            self.repairer = Sampler(models.repair_config, models.repair_params,
                                    max_source_len=cfg.repair_max_source_len, **kw)
        else:
            self.repairer = Sampler(models.actor_config, models.actor_params,
                                    max_source_len=cfg.repair_max_source_len, **kw)
        self.critic = ProgramScorer(models.critic_config, models.critic_head, models.critic_params,
                                   batch_size=cfg.critic_batch_size,
                                   max_source_len=cfg.max_source_len,
                                   max_target_len=cfg.max_target_len,
                                   pool_padding=cfg.critic_pool_padding, mesh=mesh)
        self.eos_id = models.actor_config.eos_token_id
        self._pool = pool

    # -- helpers ------------------------------------------------------------------------------

    def prompt_ids(self, problem: Problem) -> list[int]:
        return rollout.prompt_ids(problem, self.tokenizer, self.cfg.max_source_len)

    def _repair_ids(self, problem: Problem, row: dict) -> list[int]:
        failure = Failure.from_row(row, prefix="example_")
        text = repair_prompt(problem, failure, self.cfg.repair_format)
        return truncate_prompt(self.tokenizer.encode(text), self.cfg.repair_max_source_len,
                               self.eos_id)

    def score_rows(self, rows: Sequence[dict], prompts: Mapping[str, list[int]]) -> None:
        """Fill `critic_score` and `_token_pass` of rows (critic reads the problem's prompt)."""
        if not rows:
            return
        scores = self.critic.score([prompts[r["problem_id"]] for r in rows],
                                   [r["output_ids"] for r in rows])
        for row, s in zip(rows, scores):
            row["critic_score"] = s.pass_prob
            row["_token_pass"] = s.token_pass

    # -- main loop ----------------------------------------------------------------------------

    def run(self, problems: Sequence[Problem], *, initial_rows: Mapping[str, Sequence[dict]]
            | None = None, done_rows: Iterable[dict] = (),
            on_rows: Callable[[list[dict]], None] | None = None,
            progress: Callable[[int], None] | None = None) -> list[dict]:
        """Every program row of every problem, all rounds (also passed to `on_rows` round by
        round per block). `initial_rows[pid]`: round-0 programs to use instead of sampling
        (rows with `output_ids`, at least N). `done_rows`: rows of an interrupted run; a
        problem's complete rounds are kept and it continues after them."""
        cfg = self.cfg
        kept = self._resume_state(problems, done_rows)
        all_rows: list[dict] = [r for rows in kept.values() for r in rows]
        if progress is not None and all_rows:
            progress(len(all_rows))
        own_pool = self._pool is None
        pool = self._pool or ExecutionPool(workers=cfg.workers, timeout=cfg.timeout)
        try:
            for start in range(0, len(problems), cfg.block_size):
                block = problems[start: start + cfg.block_size]
                new = self._run_block(block, kept, initial_rows or {}, pool, on_rows, progress)
                all_rows.extend(new)
        finally:
            if own_pool:
                pool.close()
        order = {p.problem_id: i for i, p in enumerate(problems)}
        all_rows.sort(key=lambda r: (order[r["problem_id"]], r["sample_index"]))
        return [public_row(r) for r in all_rows]

    def _resume_state(self, problems: Sequence[Problem], done_rows: Iterable[dict]
                      ) -> dict[str, list[dict]]:
        """Per problem, the rows of its complete leading rounds (N rows each, by sample_index)."""
        n = self.cfg.num_samples
        ids = {p.problem_id for p in problems}
        by_pid: dict[str, dict[int, dict]] = {}
        for row in done_rows:
            pid = str(row.get("problem_id"))
            if pid in ids and isinstance(row.get("sample_index"), int):
                by_pid.setdefault(pid, {}).setdefault(row["sample_index"], dict(row))
        kept: dict[str, list[dict]] = {}
        for pid, rows in by_pid.items():
            out = []
            for r in range(self.cfg.rounds + 1):
                chunk = [rows.get(i) for i in range(r * n, (r + 1) * n)]
                if any(c is None or c.get("round") != r or "result" not in c for c in chunk):
                    break
                out.extend(chunk)
            if out:
                kept[pid] = out
        return kept

    def _run_block(self, block: Sequence[Problem], kept: Mapping[str, list[dict]],
                   initial_rows: Mapping[str, Sequence[dict]], pool, on_rows, progress
                   ) -> list[dict]:
        cfg, n = self.cfg, self.cfg.num_samples
        rows_of = {p.problem_id: list(kept.get(p.problem_id, [])) for p in block}
        prompts = {p.problem_id: self.prompt_ids(p) for p in block}
        by_id = {p.problem_id: p for p in block}
        made: list[dict] = []
        for r in range(cfg.rounds + 1):
            todo = [p for p in block if len(rows_of[p.problem_id]) == r * n]
            if not todo:
                continue
            new_rows: list[dict] = []
            actor_reqs, repair_reqs = [], []
            for p in todo:
                pid = p.problem_id
                base = r * n
                if r == 0:
                    given = initial_rows.get(pid)
                    if given is not None:
                        new_rows.extend(self._given_rows(p, given, prompts[pid]))
                    else:
                        actor_reqs.append((pid, None, prompts[pid], (), "sample",
                                           tuple(range(n))))
                    continue
                prev = [x for x in rows_of[pid] if x["round"] == r - 1]
                missing = [x for x in prev if x["example_result"] == PASSED
                           and "_token_pass" not in x]
                self.score_rows(missing, prompts)
                plan = plan_round(prev, n, cfg.top_m, self.eos_id, has_example_tests(p),
                                  max_seed_len=cfg.max_new_tokens)
                idx = base
                prev_by_index = {x["sample_index"]: x for x in prev}
                for src in plan.sources:
                    indices = tuple(range(idx, idx + src["count"]))
                    idx += src["count"]
                    if plan.origin == "repair":
                        ids = self._repair_ids(p, prev_by_index[src["parent"]])
                        repair_reqs.append((pid, src["parent"], ids, (), "repair", indices))
                    else:
                        actor_reqs.append((pid, src["parent"], prompts[pid], tuple(src["seed"]),
                                           plan.origin, indices))
            for sampler, reqs in ((self.actor, actor_reqs), (self.repairer, repair_reqs)):
                new_rows.extend(self._sample(sampler, reqs, by_id, r, progress))
            self._execute_and_score(new_rows, by_id, prompts, pool)
            for row in new_rows:
                rows_of[row["problem_id"]].append(row)
            new_rows.sort(key=lambda x: (x["problem_id"], x["sample_index"]))
            made.extend(new_rows)
            if on_rows is not None:
                on_rows([public_row(x) for x in new_rows])
        return made

    def _given_rows(self, problem: Problem, given: Sequence[dict], prompt: list[int]) -> list[dict]:
        n = self.cfg.num_samples
        rows = sorted(given, key=lambda x: x.get("sample_index", 0))
        if len(rows) < n:
            raise UserError(f"problem {problem.problem_id}: {len(rows)} given round-0 programs, "
                            f"fewer than --num-samples {n}")
        out = []
        for i, row in enumerate(rows[:n]):
            ids = row.get("output_ids")
            if not isinstance(ids, list):
                raise UserError(f"problem {problem.problem_id}: given programs need 'output_ids'")
            code = row.get("code")
            if not isinstance(code, str):
                code = program_code(problem, self.tokenizer.decode(ids))
            out.append(self._row(problem, i, 0, "sample", None, 0, list(row.get("prompt_ids")
                                 or prompt), list(ids), code, row.get("logprob")))
        return out

    def _row(self, problem, index, rnd, origin, parent, seed_len, prompt_ids, output_ids, code,
             logprob) -> dict:
        return {"problem_id": problem.problem_id, "sample_index": index, "round": rnd,
                "origin": origin, "parent": parent, "seed_len": seed_len,
                "prompt_ids": prompt_ids, "output_ids": output_ids, "code": code,
                "logprob": logprob, "difficulty": problem.difficulty}

    def _sample(self, sampler, reqs, by_id, rnd, progress) -> list[dict]:
        if not reqs:
            return []
        requests = [SampleRequest(pid, ids, indices, prefix) for pid, _, ids, prefix, _, indices
                    in reqs]
        rows = []
        for i, s in rollout.sample_rows(sampler, requests, [by_id[r[0]] for r in reqs],
                                        self.tokenizer, seed=self.cfg.seed, progress=progress):
            pid, parent, ids, prefix, origin, _ = reqs[i]
            rows.append(self._row(by_id[pid], s["sample_index"], rnd, origin, parent,
                                  len(prefix), s["prompt_ids"], s["output_ids"], s["code"],
                                  s["logprob"]))
        return rows

    def _execute_and_score(self, rows: list[dict], by_id, prompts, pool) -> None:
        """Example and hidden tests in the sandbox while the critic scores on device. On several
        processes each executes the rows of its share of the block's problems in its own pool
        and every process receives every outcome (the rounds then plan alike everywhere)."""
        count = jax.process_count()
        mine = rows
        if count > 1:
            share = set(rollout.host_share(list(by_id), jax.process_index(), count, even=False))
            mine = [x for x in rows if x["problem_id"] in share]
        with_examples = [x for x in mine if has_example_tests(by_id[x["problem_id"]])]
        ex_future = reward.execute(pool, by_id, with_examples, example_tests=True)
        hidden_future = reward.execute(pool, by_id, mine)
        self.score_rows(rows, prompts)  # every process: one sharded forward over the mesh
        outcomes: dict[str, dict] = {_row_key(x): {} for x in mine}
        for row, res in zip(with_examples, ex_future.result()):
            outcomes[_row_key(row)].update(
                {"example_" + k: res.get(k)
                 for k in ("result", "error_type", "error_message", "error_line")})
        for row in mine:
            if "example_result" not in outcomes[_row_key(row)]:  # no example tests: passes
                outcomes[_row_key(row)].update(
                    example_result=PASSED, example_error_type="no example tests",
                    example_error_message="", example_error_line=None)
        for row, res in zip(mine, hidden_future.result()):
            outcomes[_row_key(row)].update({k: res.get(k) for k in RESULT_FIELDS})
        if count > 1:
            outcomes = {k: v for part in gather_objects(outcomes) for k, v in part.items()}
        for row in rows:
            row.update(outcomes[_row_key(row)])


def _row_key(row: Mapping) -> str:
    return f"{row['problem_id']}\x00{row['sample_index']}"


def summarize_rows(rows: Sequence[dict], ks: Sequence[int] | None = None,
                   ns: Sequence[int] = (1, 5)) -> dict:
    """pass@k and n@k (filter: example tests, rank: critic score) of result rows."""
    problems: dict[str, ProblemSamples] = {}
    for i, r in enumerate(rows):
        p = problems.setdefault(r["problem_id"], ProblemSamples(r["problem_id"],
                                                                r.get("difficulty") or "unknown"))
        p.results.append(r["result"])
        p.example_results.append(r.get("example_result"))
        p.scores.append(r.get("critic_score"))
        p.order.append((r["sample_index"], i))
    least = min(p.num_samples for p in problems.values())
    if ks is None:
        ks = sorted({k for k in (1, 5, 10, 100, 1000) if k <= least} | {least})
    summary = summarize(problems.values(), ks, ns)
    summary.pop("per_problem")
    summary["k"], summary["n"] = list(ks), [n for n in ns]
    return summary


def plain_sampling_rows(models: Models, tokenizer, problems: Sequence[Problem],
                        cfg: CriticalSamplingConfig, num_samples: int, pool, *, mesh=None
                        ) -> list[dict]:
    """`num_samples` plain samples per problem with critical sampling's settings, executed on
    example and hidden tests and critic-scored (the baseline of `compare_plain_vs_critical`)."""
    cs = CriticalSampler(models, tokenizer, dataclasses.replace(cfg, num_samples=num_samples,
                                                                rounds=0), mesh=mesh, pool=pool)
    return cs.run(problems)


def compare_plain_vs_critical(models: Models, tokenizer, problems: Sequence[Problem],
                              cfg: CriticalSamplingConfig, *, ks: Sequence[int] | None = None,
                              ns: Sequence[int] = (1, 5), mesh=None,
                              return_rows: bool = False) -> dict:
    """Plain sampling vs critical sampling on `problems` with the same budget per problem
    (N * (rounds + 1) programs), both with the same sampler settings and seed, both evaluated on
    the hidden tests. Returns {"budget", "plain": summary, "critical": summary, "origins",
    "seconds"} (summaries as `summarize_rows`; n@k ranks by critic score in both), plus
    "rows": {"plain": [...], "critical": [...]} with `return_rows`."""
    import time

    budget = cfg.total_per_problem
    with ExecutionPool(workers=cfg.workers, timeout=cfg.timeout) as pool:
        t0 = time.perf_counter()
        plain = plain_sampling_rows(models, tokenizer, problems, cfg, budget, pool, mesh=mesh)
        t1 = time.perf_counter()
        critical = CriticalSampler(models, tokenizer, cfg, mesh=mesh, pool=pool).run(problems)
        t2 = time.perf_counter()
    ks = ks or sorted({k for k in (1, 5, 10, 100) if k <= budget} | {budget})
    origins: dict[str, int] = {}
    for r in critical:
        origins[r["origin"]] = origins.get(r["origin"], 0) + 1
    out = {"budget": budget, "num_problems": len(problems),
           "plain": summarize_rows(plain, ks, ns), "critical": summarize_rows(critical, ks, ns),
           "origins": origins, "seconds": {"plain": t1 - t0, "critical": t2 - t1}}
    if return_rows:
        out["rows"] = {"plain": plain, "critical": critical}
    return out

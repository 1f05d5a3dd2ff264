"""The online_rl stage: rollout -> reward -> learner with the live actor, overlapped.

Each iteration takes P problems of `data.problems` (a seeded, reshuffled-per-epoch order) and
1. rollout (`rl/rollout.py`): samples N = `rl.num_samples` programs for each from the *current*
   actor params (given after every update, `on_step`), plus one greedy program per problem when
   `rl.baseline == "greedy"`;
2. reward (`rl/reward.py`): runs them in the sandbox pool (asynchronously), then turns outcomes
   into token returns (SPEC §5: reward minus baseline, times the critic's per-token probability
   of the true outcome when `rl.critic_checkpoint` is set) and the RL batch (P * N rows),
   zipped with ground-truth programs for the CE part;
3. learner: the training loop's jitted step (`train/steps.py`) takes the batch.
`OnlineSource` only sequences these for the training loop. Identical programs of a problem run
once (the pool's cache; hit rate logged).

Several processes (`jax.process_count() > 1`): the sampler call is one SPMD program over the
mesh; each process then keeps the problems of its own share of the batch (`rollout.host_share`:
process i holds rows [i*B/n, (i+1)*B/n) of the global batch, as `partitioning.host_row_range`
feeds them), executes them in its own sandbox pool on its own CPUs, scores them with the critic
as its part of a global critic batch, computes their returns and feeds its rows to the step.
The run's statistics are gathered to process 0, which logs them and names the slowest host.

Overlap (`overlap.ExecutionQueue`): with `rl.overlap_depth = d >= 1` the source keeps d
executions in flight beyond the batch being consumed, so the sandbox runs batch k while the
device learns from batch k-1 and samples batch k+1; batches are sampled from params at most d
updates old. `d = 0` is the serial loop (sample, wait for the sandbox, learn). The device idle
fraction reported is the share of the stage's wall time the host sat blocked on the sandbox
after the device had finished everything it was given (time it was certainly idle), measured from
the second iteration on (the first compiles the sampler and the train step); on several
processes, the slowest host's.

Under `rl.mode = paper_faithful` the programs are CodeRL's RL samples (`programs.coderl_rl_rows`,
as offline RL): sampled after the generate.py prompt, learnt from (and scored by the critic) as
the re-tokenised, reindented program text after that prompt.

Optional critic refresh (`rl.critic_refresh_every`, `rl/critic_refresh.py`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from coderl_jax import partitioning, paths
from coderl_jax.data import pipeline
from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.execution import pool as pool_lib
from coderl_jax.files import write_json
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.paths import PathLike
from coderl_jax.rl import reward
from coderl_jax.rl.critic_refresh import CriticRefresh, refreshed_path
from coderl_jax.rl.critic_train import log_metrics
from coderl_jax.rl.overlap import ExecutionQueue, iterate_batches
from coderl_jax.rl.programs import CODERL_RL_PROMPT_STYLE, coderl_rl_rows
from coderl_jax.rl.rewards import CLASS_NAMES
from coderl_jax.rl.rollout import Rollout, RolloutConfig, host_share
from coderl_jax.rl.scoring import load_scorer
from coderl_jax.train.stage_context import StageContext

STATS_FILE = "online_stats.json"
# per-host figures gathered to process 0 (in this order)
HOST_FIELDS = ("wait_s", "execute_s", "sample_s", "cache_hits", "cache_misses", "programs",
               "pid")


@dataclasses.dataclass
class Launched:
    """A sampled iteration waiting for its execution results (this host's rows)."""

    index: int  # iteration number
    sample_rows: list[dict]
    greedy_rows: list[dict]


class OnlineSource:
    """See the module docstring. Checkpointable: the state is the number of batches delivered
    (in-flight samples are dropped on restore and drawn again from the restored params)."""

    def __init__(self, ctx: StageContext):
        self.data, self.train, self.run, self.rl = ctx.data, ctx.train, ctx.run, ctx.rl
        self.mesh = ctx.mesh if ctx.mesh is not None else partitioning.make_mesh()
        self.rules = ctx.rules
        self.model_config = ctx.model_config
        self.workdir = paths.as_path(ctx.workdir) if ctx.workdir else None
        self.tokenizer = ctx.load_tokenizer()
        self.problems = [p for p in load_problems(self.data.problems, self.data.split or None)
                         if len(p.tests)]
        if not self.problems:
            raise UserError(f"no problems with unit tests in {self.data.problems}")
        self.table = problems_by_id(self.problems)
        self.process, self.processes = jax.process_index(), jax.process_count()
        self.batch_rows = self.train.batch_size  # the global batch
        n = self.rl.num_samples
        if self.batch_rows % n:
            raise UserError(f"train.batch_size {self.batch_rows} is not a multiple of "
                            f"rl.num_samples {n} (each batch holds whole problems)")
        if self.rl.baseline == "mean_others" and n < 2:
            raise UserError("rl.baseline='mean_others' needs rl.num_samples >= 2")
        self.problems_per_batch = self.batch_rows // n
        if self.problems_per_batch % self.processes:
            raise UserError(f"{self.problems_per_batch} problems per batch (train.batch_size / "
                            f"rl.num_samples) do not split over {self.processes} processes")
        self.local_rows = self.batch_rows // self.processes
        self.max_new_tokens = self.rl.max_new_tokens or self.data.max_target_len
        self.pool = pool_lib.ExecutionPool(workers=self.rl.workers, timeout=self.rl.timeout,
                                           harness=self.rl.harness or "real")
        self.queue = ExecutionQueue(self.rl.overlap_depth)
        self.delivered = 0  # batches handed to the training loop
        self.launched = 0
        self.programs = 0  # programs this host executed
        self.step = 0
        self.start_step = 0
        self.last_step = int(self.train.num_steps)
        self._order = self._problem_order(0)
        self.rollout = self.greedy_rollout = None
        self.scorer = self._load_critic()
        self.refresh = CriticRefresh(self.scorer, self.run, self.mesh, self.rules,
                                     self.rl.critic_refresh_every, self.rl.critic_refresh_steps)
        self._window: list[dict] = []
        self.gt = self._gt_iterator()
        self.closed = False

    # ----------------------------------------------------------------------------- set-up
    def _problem_order(self, skip: int):
        it = iterate_batches(list(range(len(self.problems))), self.problems_per_batch,
                             seed=self.data.shuffle_seed)
        for _ in range(skip):
            next(it)
        return it

    def _gt_iterator(self):
        train = self.train
        if train.rl_mix == "sum" and train.ce_weight == 0.0:
            return None
        # the global batch of ground truth on every host, which keeps its own rows: host i's
        # ground truth then rides with its samples in the rows the one-process run puts there
        cfg = dataclasses.replace(pipeline.training_config(self.data, train),
                                  batch_size=self.batch_rows)
        ds = pipeline.make_batches("warmup", self.tokenizer, cfg, problems=self.problems,
                                   process_index=0, process_count=1)
        return pipeline.make_iterator(ds, cfg)

    def _gt_rows(self) -> dict:
        """This host's rows of the next ground-truth batch."""
        batch = next(self.gt)
        if self.processes == 1:
            return batch
        start, stop = partitioning.host_row_range(self.mesh, self.batch_rows)
        return {k: v[start:stop] for k, v in batch.items()}

    def _load_critic(self):
        if not self.rl.critic_checkpoint:
            return None
        path = refreshed_path(self.workdir) or self.rl.critic_checkpoint
        scorer = load_scorer(path, mesh=self.mesh, rules=self.rules,
                             pool_padding=self.rl.mode == "paper_faithful")
        scorer.process_local = True  # each host scores its own programs
        return scorer

    @property
    def prompt_style(self) -> str:
        """The prompt programs are sampled, scored and learnt after (CodeRL's RL samples under
        paper_faithful)."""
        return CODERL_RL_PROMPT_STYLE if self.rl.mode == "paper_faithful" else "train"

    def _make_rollouts(self, params) -> None:
        common = dict(max_new_tokens=self.max_new_tokens, max_source_len=self.data.max_source_len,
                      prompt_style=self.prompt_style)
        self.rollout = Rollout(self.model_config, params, self.tokenizer, RolloutConfig(
            sampling=SamplingConfig(temperature=self.rl.temperature, top_p=self.rl.top_p,
                                    top_k=self.rl.top_k),
            batch_size=self.batch_rows, **common), mesh=self.mesh, rules=self.rules)
        if self.rl.baseline == "greedy":
            self.greedy_rollout = Rollout(self.model_config, params, self.tokenizer, RolloutConfig(
                sampling=SamplingConfig(greedy=True), batch_size=self.problems_per_batch,
                **common), mesh=self.mesh, rules=self.rules)

    # ----------------------------------------------------------------------------- hooks
    def on_start(self, state) -> None:
        self.step = self.start_step = int(state.step)
        self._set_params(state.params)

    def on_step(self, state) -> None:
        self.step += 1
        self._set_params(state.params)
        if self.refresh.due(self.step):
            loss = self.refresh.refresh(self.problems, self.table, self.tokenizer, self.data,
                                        self.batch_rows, self.rl.mode, self.prompt_style)
            if loss is not None and self.workdir is not None and self.process == 0:
                log_metrics(self.workdir, self.step, {"online/critic_refresh_loss": loss})
        if self.step >= self.last_step:
            self.finish()

    def _set_params(self, params) -> None:
        if self.rollout is None:
            self._make_rollouts(params)
            return
        self.rollout.set_params(params)
        if self.greedy_rollout is not None:
            self.greedy_rollout.set_params(params)

    # ----------------------------------------------------------------------------- state
    def get_state(self) -> dict:
        state = {"delivered": self.delivered}
        if self.gt is not None:
            state["gt"] = self.gt.get_state()
        return state

    def set_state(self, state: dict) -> None:
        self.delivered = self.launched = int(state["delivered"])
        self._order = self._problem_order(self.delivered)
        self.queue.clear()
        if self.gt is not None and "gt" in state:
            self.gt.set_state(state["gt"])

    # ----------------------------------------------------------------------------- the loop
    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.rollout is None:
            raise UserError("the online source was not started (its on_start hook never ran)")
        if self.delivered == self.start_step + 1 and self.last_step > self.start_step + 1:
            self.queue.restart_window()  # the first iteration compiled the sampler and the step
        # one batch per update: never sample past the run's last step
        for _ in range(self.queue.wanted()):
            if self.launched >= self.last_step:
                break
            self._launch()
        if not self.queue.pending:
            self._launch()
        item, results = self.queue.pop()
        batch = self._build(item, results)
        self.delivered += 1
        self._log()
        return batch

    def _launch(self) -> None:
        """Rollout of iteration `launched` from the current params; submit this host's share."""
        t0 = time.perf_counter()
        k = self.launched
        # problems in id order: process i's share is rows [i*B/n, (i+1)*B/n) of the batch
        problems = sorted((self.problems[i] for i in next(self._order)),
                          key=lambda p: p.problem_id)
        seed = (int(self.train.seed) * 1_000_003 + k) % (2**31 - 1)
        mine = {p.problem_id for p in host_share(problems, self.process, self.processes)}
        rows = [r for r in self.rollout.run(problems, self.rl.num_samples, seed)
                if r["problem_id"] in mine]
        greedy = []
        if self.greedy_rollout is not None:
            greedy = [r for r in self.greedy_rollout.run(problems, 1, seed)
                      if r["problem_id"] in mine]
        future = reward.execute(self.pool, self.table, rows + greedy)
        self.programs += len(rows) + len(greedy)
        self.launched += 1
        self.queue.launch(Launched(k, rows, greedy), future, time.perf_counter() - t0)

    def _build(self, item: Launched, results: list[dict]) -> dict:
        """Outcomes -> this host's RL batch (+ ground truth), as the mode feeds it."""
        n_s = len(item.sample_rows)
        rows = reward.with_results(item.sample_rows, results[:n_s], ("result", "error_type"))
        greedy = reward.greedy_results(item.greedy_rows, results[n_s:])
        faithful = self.rl.mode == "paper_faithful"
        if faithful:  # CodeRL's RL samples: re-tokenised, reindented targets
            rows = coderl_rl_rows(rows, self.tokenizer, self.data.max_target_len)
        if self.scorer is not None:
            rows = reward.critic_token_probs(
                self.scorer, rows, self.table, self.tokenizer, batch_size=self.local_rows,
                max_source_len=self.data.max_source_len,
                max_target_len=self.data.max_target_len, mode=self.rl.mode,
                prompt_style=self.prompt_style)
        # generate.py's truncation keeps `</s>` (`programs.coderl_rl_config`, as offline RL)
        batch = reward.rl_batch(rows, self.table, self.tokenizer, baseline=self.rl.baseline,
                                greedy=greedy, batch_rows=self.local_rows,
                                max_source_len=self.data.max_source_len,
                                max_target_len=self.data.max_target_len,
                                source_cut="eos" if faithful else self.train.source_cut,
                                mode=self.rl.mode, prompt_style=self.prompt_style)
        if self.gt is not None:
            gt = self._gt_rows()
            batch.update({"gt_" + k: v for k, v in gt.items()})
        self._window.append(window_counts(rows, greedy))
        self.refresh.collect(rows)
        return batch

    # ----------------------------------------------------------------------------- logging
    def host_stats(self) -> dict:
        """This host's overlap, cache and execution figures."""
        pool = self.pool.stats()
        out = self.queue.stats.as_dict()
        out.update(cache_hits=pool["cache_hits"], cache_misses=pool["cache_misses"],
                   programs=self.programs, pid=os.getpid())
        return out

    def stats(self) -> dict:
        """The run's figures: this host's alone, or on several processes every host's (`hosts`,
        gathered: every process must call this together) with the slowest host's wait."""
        mine = self.host_stats()
        out = dict(mine)
        if self.processes > 1:
            from jax.experimental import multihost_utils

            table = np.asarray(multihost_utils.process_allgather(
                np.array([float(mine[k]) for k in HOST_FIELDS], np.float64)))  # [hosts, fields]
            hosts = [dict(zip(HOST_FIELDS, row.tolist()), process=i)
                     for i, row in enumerate(table)]
            for h in hosts:
                for k in ("cache_hits", "cache_misses", "programs", "pid"):
                    h[k] = int(h[k])
            slowest = max(range(len(hosts)), key=lambda i: (hosts[i]["wait_s"], -i))
            out.update(hosts=hosts, slowest_host=slowest, wait_s=hosts[slowest]["wait_s"],
                       cache_hits=sum(h["cache_hits"] for h in hosts),
                       cache_misses=sum(h["cache_misses"] for h in hosts),
                       programs=sum(h["programs"] for h in hosts))
            out.pop("pid")
        lookups = out["cache_hits"] + out["cache_misses"]
        out.update(overlap_depth=self.queue.depth,
                   cache_hit_rate=out["cache_hits"] / lookups if lookups else 0.0)
        return out

    def _log(self) -> None:
        """Every log_every steps: online metrics of the window (every host's rows), at the step
        the batch trains."""
        every = max(int(self.train.log_every), 1)
        step = self.delivered
        if step % every and step != self.last_step:
            return
        counts = np.sum([list(w.values()) for w in self._window], axis=0) if self._window \
            else np.zeros(len(WINDOW_FIELDS))
        s = None
        if self.processes > 1:  # collectives: every process takes part
            from jax.experimental import multihost_utils

            counts = np.asarray(multihost_utils.process_allgather(
                np.asarray(counts, np.float64))).sum(axis=0)
            s = self.stats()
        window, self._window = self._window, []
        if self.process != 0 or self.workdir is None or not window:
            return
        s = s or self.stats()
        c = dict(zip(WINDOW_FIELDS, counts.tolist()))
        elapsed = time.perf_counter() - (self.queue._start or time.perf_counter())
        metrics = {"online/pass_rate": c["passed"] / c["rows"],
                   "online/mean_reward": c["reward"] / c["rows"]}
        if c["greedy"]:
            metrics["online/greedy_pass_rate"] = c["greedy_passed"] / c["greedy"]
        metrics.update({f"online/outcome/{name}": c[name] / c["rows"] for name in CLASS_NAMES})
        metrics.update({"online/cache_hit_rate": s["cache_hit_rate"],
                        "online/idle_fraction": s["wait_s"] / elapsed if elapsed > 0 else 0.0,
                        "online/programs_per_s": s["programs"] / elapsed if elapsed > 0
                        else 0.0})
        if "slowest_host" in s:
            metrics["online/slowest_host"] = float(s["slowest_host"])
        log_metrics(self.workdir, step, metrics)

    def finish(self) -> dict:
        """Close the pool, print and save the stage's overlap / cache statistics."""
        if self.closed:
            return self._final
        self.closed = True
        self.queue.finish()
        stats = self.stats()
        stats["idle_fraction"] = stats["wait_s"] / stats["total_s"] if stats["total_s"] else 0.0
        stats["measured_iterations"] = stats.pop("batches")
        stats["iterations"] = self.delivered - self.start_step
        self.pool.close()
        self._final = stats
        self.refresh.save(self.workdir)
        if self.process == 0:
            slowest = (f"; slowest host: process {stats['slowest_host']} of {self.processes}"
                       if "slowest_host" in stats else "")
            print(f"online RL: {stats['iterations']} iterations; over the last "
                  f"{stats['measured_iterations']} ({stats['total_s']:.1f} s), overlap depth "
                  f"{stats['overlap_depth']}: device idle fraction "
                  f"{stats['idle_fraction']:.3f} (host blocked on the sandbox "
                  f"{stats['wait_s']:.1f} s; sampling {stats['sample_s']:.1f} s, execution "
                  f"{stats['execute_s']:.1f} s); "
                  f"execution cache hit rate {stats['cache_hit_rate']:.3f} "
                  f"({stats['cache_hits']} of {stats['cache_hits'] + stats['cache_misses']})"
                  + slowest, flush=True)
            if self.workdir is not None:
                write_json(self.workdir / STATS_FILE, stats)
        return stats

    close = finish


WINDOW_FIELDS = ("rows", "passed", "reward", "greedy", "greedy_passed", *CLASS_NAMES)


def window_counts(rows, greedy: dict) -> dict:
    """Sums over one batch's executed rows (`WINDOW_FIELDS`), added up over hosts and steps."""
    stats = reward.outcome_stats(rows, greedy)
    out = {"rows": len(rows), "passed": sum(int(r["result"]) == 1 for r in rows),
           "reward": stats["mean_reward"] * len(rows) if rows else 0.0,
           "greedy": len(greedy), "greedy_passed": sum(v == 1 for v in greedy.values())}
    out.update(stats["outcomes"])
    return out


def make_batch_source(ctx: StageContext) -> OnlineSource:
    """The online_rl stage's source (train/sources.py builds it)."""
    return OnlineSource(ctx)


def read_stats(workdir: PathLike) -> dict | None:
    path = paths.as_path(workdir) / STATS_FILE
    return json.loads(path.read_text()) if path.is_file() else None

"""The online_rl stage's batch source: sample from the live actor, execute, learn.

Each iteration takes P problems of `data.problems` (a seeded, reshuffled-per-epoch order), samples
N = `rl.num_samples` programs for each from the *current* actor params (the sampler is given the
train state after every update, `on_step`), plus one greedy program per problem when
`rl.baseline == "greedy"`, submits them all to the sandbox pool (asynchronously), and, when the
training loop asks for the batch, turns the outcomes into token returns (SPEC §5: reward minus
baseline, times the critic's per-token probability of the true outcome when `rl.critic_checkpoint`
is set) and an RL batch (P * N rows = the per-host batch) zipped with ground-truth programs for
the CE part. Identical programs of a problem run once (the pool's cache; hit rate logged).

Overlap (`overlap.ExecutionQueue`): with `rl.overlap_depth = d >= 1` the source keeps d
executions in flight beyond the batch being consumed, so the sandbox runs batch k while the
device learns from batch k-1 and samples batch k+1; batches are sampled from params at most d
updates old. `d = 0` is the serial loop (sample, wait for the sandbox, learn). The device idle
fraction reported is the share of the stage's wall time the host sat blocked on the sandbox
after the device had finished everything it was given (time it was certainly idle), measured from
the second iteration on (the first compiles the sampler and the train step).

Optional critic refresh (`rl.critic_refresh_every`): every so many steps the critic takes
`rl.critic_refresh_steps` updates on the outcomes seen since the last refresh plus ground truth;
the refreshed critic is saved to `<workdir>/critic_refreshed` (a resumed run starts from it).
Sampling runs on one process (multi-host online RL is not supported yet).
"""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from coderl_jax import paths
from coderl_jax.config import OptimizerConfig, RLConfig, TrainConfig
from coderl_jax.data.prompts import build_prompt, truncate_prompt
from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.execution import pool as pool_lib
from coderl_jax.paths import PathLike
from coderl_jax.rl.critic_train import ground_truth_rows, log_metrics
from coderl_jax.rl.modes import apply_to_batch
from coderl_jax.rl.overlap import ExecutionQueue, iterate_batches
from coderl_jax.rl.returns import with_token_returns
from coderl_jax.rl.rewards import reward

STATS_FILE = "online_stats.json"
REFRESHED_CRITIC = "critic_refreshed"


@dataclasses.dataclass
class Launched:
    """A sampled iteration waiting for its execution results."""

    index: int  # iteration number
    sample_rows: list[dict]
    greedy_rows: list[dict]


class OnlineSource:
    """See the module docstring. Checkpointable: the state is the number of batches delivered
    (in-flight samples are dropped on restore and drawn again from the restored params)."""

    def __init__(self, context: dict):
        import jax

        if jax.process_count() > 1:
            raise UserError("online_rl samples on one process; multi-host online RL is not "
                            "supported yet (use offline_rl across hosts)")
        self.data, self.train = context["data"], context["train"]
        run = context.get("run")
        self.run = run
        self.rl: RLConfig = run.rl if run is not None else RLConfig()
        self.mesh = context.get("mesh")
        if self.mesh is None:
            from coderl_jax.partitioning import make_mesh

            self.mesh = make_mesh()
        self.rules = run.mesh.logical_axis_rules if run is not None else None
        self.model_config = context["model_config"]
        self.workdir = paths.as_path(context["workdir"]) if context.get("workdir") else None
        self.tokenizer = context.get("tokenizer")
        if self.tokenizer is None:
            from coderl_jax.tokenizer import load_tokenizer

            self.tokenizer = load_tokenizer(self.data.tokenizer or None)
        self.problems = [p for p in load_problems(self.data.problems, self.data.split or None)
                         if len(p.tests)]
        if not self.problems:
            raise UserError(f"no problems with unit tests in {self.data.problems}")
        self.table = problems_by_id(self.problems)
        self.batch_rows = self.train.batch_size
        n = self.rl.num_samples
        if self.batch_rows % n:
            raise UserError(f"train.batch_size {self.batch_rows} is not a multiple of "
                            f"rl.num_samples {n} (each batch holds whole problems)")
        if self.rl.baseline == "mean_others" and n < 2:
            raise UserError("rl.baseline='mean_others' needs rl.num_samples >= 2")
        self.problems_per_batch = self.batch_rows // n
        self.max_new_tokens = self.rl.max_new_tokens or self.data.max_target_len
        self.pool = pool_lib.ExecutionPool(workers=self.rl.workers, timeout=self.rl.timeout,
                                           harness=self.rl.harness or "real")
        self.queue = ExecutionQueue(self.rl.overlap_depth)
        self.delivered = 0  # batches handed to the training loop
        self.launched = 0
        self.step = 0
        self.start_step = 0
        self.last_step = int(self.train.num_steps)
        self._order = self._problem_order(0)
        self._prompts: dict[str, list[int]] = {}
        self.sampler = self.greedy_sampler = None
        self.scorer = self._load_critic()
        self.refresher = None
        self._recent: list[dict] = []
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
        from coderl_jax.data import pipeline

        cfg = pipeline.training_config(self.data, train)
        ds = pipeline.make_batches("warmup", self.tokenizer, cfg, problems=self.problems)
        return pipeline.make_iterator(ds, cfg)

    def _load_critic(self):
        if not self.rl.critic_checkpoint:
            return None
        from coderl_jax.rl.scoring import load_scorer

        path = self.rl.critic_checkpoint
        if self.workdir is not None and (self.workdir / REFRESHED_CRITIC).is_dir():
            path = str(self.workdir / REFRESHED_CRITIC)
        return load_scorer(path, mesh=self.mesh, rules=self.rules,
                           pool_padding=self.rl.mode == "paper_faithful")

    def _make_samplers(self, params) -> None:
        from coderl_jax.inference.decoding import SamplingConfig
        from coderl_jax.inference.sampler import Sampler

        common = dict(mesh=self.mesh, rules=self.rules, batch_size=self.batch_rows,
                      max_new_tokens=self.max_new_tokens, max_source_len=self.data.max_source_len)
        self.sampler = Sampler(self.model_config, params, sampling=SamplingConfig(
            temperature=self.rl.temperature, top_p=self.rl.top_p, top_k=self.rl.top_k),
            **common)
        if self.rl.baseline == "greedy":
            greedy_rows = self.problems_per_batch
            self.greedy_sampler = Sampler(self.model_config, params,
                                          sampling=SamplingConfig(greedy=True),
                                          **dict(common, batch_size=greedy_rows))

    # ----------------------------------------------------------------------------- hooks
    def on_start(self, state) -> None:
        self.step = self.start_step = int(state.step)
        self._set_params(state.params)

    def on_step(self, state) -> None:
        self.step += 1
        self._set_params(state.params)
        if (self.scorer is not None and self.rl.critic_refresh_every > 0
                and self.step % self.rl.critic_refresh_every == 0):
            self._refresh_critic()
        if self.step >= self.last_step:
            self.finish()

    def _set_params(self, params) -> None:
        if self.sampler is None:
            self._make_samplers(params)
        else:
            self.sampler.set_params(params)
            if self.greedy_sampler is not None:
                self.greedy_sampler.set_params(params)

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
        if self.sampler is None:
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

    def _prompt_ids(self, problem) -> list[int]:
        ids = self._prompts.get(problem.problem_id)
        if ids is None:
            ids = truncate_prompt(self.tokenizer.encode(build_prompt(problem)),
                                  self.data.max_source_len, self.tokenizer.eos_id)
            self._prompts[problem.problem_id] = ids
        return ids

    def _launch(self) -> None:
        """Sample iteration `launched` from the current params and submit its execution."""
        from coderl_jax.inference.sampler import SampleRequest

        t0 = time.perf_counter()
        k = self.launched
        problems = [self.problems[i] for i in next(self._order)]
        n = self.rl.num_samples
        seed = (int(self.train.seed) * 1_000_003 + k) % (2**31 - 1)
        requests = [SampleRequest(p.problem_id, self._prompt_ids(p), tuple(range(n)))
                    for p in problems]
        rows = self._sample(self.sampler, requests, problems, seed)
        greedy = []
        if self.greedy_sampler is not None:
            greedy_requests = [dataclasses.replace(r, sample_indices=(0,)) for r in requests]
            greedy = self._sample(self.greedy_sampler, greedy_requests, problems, seed)
        future = self.pool.submit(self.table, rows + greedy)
        self.launched += 1
        self.queue.launch(Launched(k, rows, greedy), future, time.perf_counter() - t0)

    def _sample(self, sampler, requests, problems, seed) -> list[dict]:
        rows = []
        for s in sampler.sample(requests, seed=seed):
            p = problems[s.request_index]
            rows.append({"problem_id": p.problem_id, "sample_index": s.sample_index,
                         "output_ids": s.output_ids,
                         "code": self.tokenizer.decode(s.output_ids, skip_special_tokens=True)})
        rows.sort(key=lambda r: (r["problem_id"], r["sample_index"]))
        return rows

    def _build(self, item: Launched, results: list[dict]) -> dict:
        """Outcomes -> the RL batch (+ ground truth), as the mode feeds it."""
        from coderl_jax.data.pipeline import Collate, PipelineConfig, rl_examples

        n_s = len(item.sample_rows)
        rows = [dict(r, result=res["result"], error_type=res["error_type"])
                for r, res in zip(item.sample_rows, results[:n_s])]
        greedy = {r["problem_id"]: res["result"]
                  for r, res in zip(item.greedy_rows, results[n_s:])}
        if self.scorer is not None:
            from coderl_jax.rl.scoring import score_rows

            rows = list(score_rows(self.scorer, rows, self.table, self.tokenizer,
                                   batch_size=self.batch_rows,
                                   max_source_len=self.data.max_source_len,
                                   max_target_len=self.data.max_target_len, mode=self.rl.mode))
        rows = with_token_returns(rows, self.rl.baseline,
                                  greedy if self.rl.baseline == "greedy" else None)
        cfg = PipelineConfig(batch_size=self.batch_rows, max_source_len=self.data.max_source_len,
                             max_target_len=self.data.max_target_len, shuffle=False,
                             num_epochs=1, source_cut=self.train.source_cut)
        batch = Collate(self.tokenizer, cfg, "rl")(rl_examples(self.table, rows))
        if self.gt is not None:
            gt = next(self.gt)
            batch.update({"gt_" + k: v for k, v in gt.items()})
        results_s = [int(r["result"]) for r in rows]
        self._window.append({
            "pass_rate": float(np.mean([r == 1 for r in results_s])),
            "mean_reward": float(np.mean([reward(r) for r in results_s])),
            "greedy_pass_rate": (float(np.mean([v == 1 for v in greedy.values()]))
                                 if greedy else float("nan"))})
        if self.scorer is not None and self.rl.critic_refresh_every > 0:
            self._recent.extend({k: r[k] for k in ("problem_id", "output_ids", "result")}
                                for r in rows)
        return apply_to_batch(batch, self.rl.mode, self.tokenizer.eos_id)

    # ----------------------------------------------------------------------------- logging
    def stats(self) -> dict:
        pool = self.pool.stats()
        lookups = pool["cache_hits"] + pool["cache_misses"]
        out = self.queue.stats.as_dict()
        out.update(overlap_depth=self.queue.depth, cache_hits=pool["cache_hits"],
                   cache_misses=pool["cache_misses"],
                   cache_hit_rate=pool["cache_hits"] / lookups if lookups else 0.0)
        return out

    def _log(self) -> None:
        """Every log_every steps: online metrics of the window, at the step the batch trains."""
        every = max(int(self.train.log_every), 1)
        step = self.delivered
        if step % every and step != self.last_step:
            return
        import jax

        if jax.process_index() != 0 or self.workdir is None or not self._window:
            self._window = []
            return
        window, self._window = self._window, []
        s = self.stats()
        elapsed = time.perf_counter() - (self.queue._start or time.perf_counter())
        metrics = {f"online/{key}": float(np.nanmean([w[key] for w in window]))
                   for key in window[0] if not all(np.isnan(w[key]) for w in window)}
        metrics.update({"online/cache_hit_rate": s["cache_hit_rate"],
                        "online/idle_fraction": s["wait_s"] / elapsed if elapsed > 0 else 0.0})
        log_metrics(self.workdir, step, metrics)

    def finish(self) -> dict:
        """Close the pool, print and save the stage's overlap / cache statistics."""
        if self.closed:
            return self._final
        self.closed = True
        stats = self.queue.finish().as_dict()
        stats.update(self.stats())
        stats["measured_iterations"] = stats.pop("batches")
        stats["iterations"] = self.delivered - self.start_step
        self.pool.close()
        self._final = stats
        self._save_refreshed_critic()
        import jax

        if jax.process_index() == 0:
            print(f"online RL: {stats['iterations']} iterations; over the last "
                  f"{stats['measured_iterations']} ({stats['total_s']:.1f} s), overlap depth "
                  f"{stats['overlap_depth']}: device idle fraction "
                  f"{stats['idle_fraction']:.3f} (host blocked on the sandbox "
                  f"{stats['wait_s']:.1f} s; sampling {stats['sample_s']:.1f} s, execution "
                  f"{stats['execute_s']:.1f} s); "
                  f"execution cache hit rate {stats['cache_hit_rate']:.3f} "
                  f"({stats['cache_hits']} of {stats['cache_hits'] + stats['cache_misses']})",
                  flush=True)
            if self.workdir is not None:
                from coderl_jax.files import write_json

                write_json(self.workdir / STATS_FILE, stats)
        return stats

    close = finish

    # ----------------------------------------------------------------------------- critic refresh
    def _refresh_critic(self) -> None:
        """A few critic updates on the outcomes seen since the last refresh (plus ground truth)."""
        if not self._recent:
            return
        if self.refresher is None:
            self.refresher = CriticRefresher(self.scorer, self.run, self.mesh, self.rules)
        pids = {r["problem_id"] for r in self._recent}
        rows = self._recent + ground_truth_rows(self.problems, pids)
        self._recent = []
        loss = self.refresher.update(rows, self.table, self.tokenizer, self.data,
                                     self.rl.critic_refresh_steps, self.batch_rows, self.rl.mode)
        if self.workdir is not None:
            from coderl_jax.rl.critic_train import log_metrics

            log_metrics(self.workdir, self.step, {"online/critic_refresh_loss": loss})

    def _save_refreshed_critic(self) -> None:
        if self.refresher is None or self.workdir is None:
            return
        import jax

        from coderl_jax import checkpoint_io

        params = jax.device_get(self.scorer.params)
        checkpoint_io.save_model(self.workdir / REFRESHED_CRITIC, params,
                                 self.scorer.model_config, self.scorer.critic_config)


class CriticRefresher:
    """The critic's own train state and jitted step, fed from online outcomes."""

    def __init__(self, scorer, run, mesh, rules):
        from coderl_jax import partitioning
        from coderl_jax.models.critic import critic_logical_axes
        from coderl_jax.train import state as state_lib, steps as steps_lib
        from coderl_jax.train.loop import step_options

        self.scorer = scorer
        rules = tuple(rules) if rules is not None else partitioning.DEFAULT_RULES
        train = run.train if run is not None else TrainConfig()
        optimizer = run.optimizer if run is not None else OptimizerConfig()
        optimizer = dataclasses.replace(optimizer, schedule="constant", warmup_steps=0)
        self.tx, schedule = state_lib.make_optimizer(optimizer, 1)
        opts = dataclasses.replace(step_options(train, scorer.model_config), num_microbatches=1)
        objective = steps_lib.critic_objective(scorer.module, opts)
        axes = critic_logical_axes(scorer.model_config, scorer.critic_config)
        self.state, shardings = state_lib.state_from_params(scorer.params, axes, self.tx, mesh,
                                                            rules)
        self.step_fn = steps_lib.make_train_step(objective, self.tx, schedule, opts, mesh,
                                                 shardings, rules)
        self.mesh = mesh
        self.calls = 0

    def update(self, rows, table, tokenizer, data, steps: int, batch_rows: int, mode: str) -> float:
        import jax

        from coderl_jax import partitioning
        from coderl_jax.data.pipeline import Collate, PipelineConfig, critic_examples

        cfg = PipelineConfig(batch_size=batch_rows, max_source_len=data.max_source_len,
                             max_target_len=data.max_target_len, shuffle=False, num_epochs=1,
                             num_classes=self.scorer.num_classes,
                             source_cut="plain" if mode == "paper_faithful" else "eos")
        examples = critic_examples(table, rows, self.scorer.num_classes)
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        losses = []
        for i in range(steps):
            pick = rng.choice(len(examples), size=min(batch_rows, len(examples)), replace=False)
            batch = apply_to_batch(Collate(tokenizer, cfg, "critic")([examples[j] for j in pick]),
                                   mode, tokenizer.eos_id)
            keys = set(self.step_fn.objective.batch_keys) | {"valid"}
            batch = partitioning.shard_batch({k: v for k, v in batch.items() if k in keys},
                                             self.mesh)
            self.state, metrics = self.step_fn(self.state, batch,
                                               jax.random.key(self.calls * 1000 + i))
            losses.append(float(metrics["loss"]))
        self.scorer.set_params(self.state.params, place=False)
        return float(np.mean(losses))


def make_batch_source(context: dict) -> OnlineSource:
    """The online_rl stage's source (train/sources.py builds it)."""
    return OnlineSource(context)


def read_stats(workdir: PathLike) -> dict | None:
    path = paths.as_path(workdir) / STATS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


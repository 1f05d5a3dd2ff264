"""Critic refresh during online RL: a few critic updates on the outcomes seen lately.

Every `rl.critic_refresh_every` actor steps the critic takes `rl.critic_refresh_steps` updates
on the programs executed since the last refresh plus the ground truth of their problems (each as
a passed program), with its own optimizer state and jitted step; the scorer then weighs returns
with the new params. The refreshed critic is saved to `<workdir>/critic_refreshed`, where a
resumed run finds it. On several processes every process feeds its own rows as its part of each
critic batch.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from coderl_jax import checkpoint_io, partitioning, paths
from coderl_jax.config import OptimizerConfig, TrainConfig
from coderl_jax.data.pipeline import Collate, PipelineConfig, critic_examples
from coderl_jax.models.critic import critic_logical_axes
from coderl_jax.rl.critic_train import ground_truth_rows
from coderl_jax.rl.modes import apply_to_batch
from coderl_jax.train import state as state_lib, steps as steps_lib
from coderl_jax.train.loop import step_options

REFRESHED_CRITIC = "critic_refreshed"


def refreshed_path(workdir) -> str | None:
    """The refreshed critic a resumed run starts from, if there is one."""
    if workdir is None or not (paths.as_path(workdir) / REFRESHED_CRITIC).is_dir():
        return None
    return str(paths.as_path(workdir) / REFRESHED_CRITIC)


class CriticRefresher:
    """The critic's own train state and jitted step, fed from online outcomes."""

    def __init__(self, scorer, run, mesh, rules):
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

    def update(self, rows, table, tokenizer, data, steps: int, batch_rows: int, mode: str,
               prompt_style: str = "train") -> float:
        """`steps` updates on random picks of `rows` (`batch_rows`: the global batch), each
        program after its problem's `prompt_style` prompt; returns the mean loss."""
        count = jax.process_count()
        local = batch_rows // count
        cfg = PipelineConfig(batch_size=local, max_source_len=data.max_source_len,
                             max_target_len=data.max_target_len, shuffle=False, num_epochs=1,
                             num_classes=self.scorer.num_classes,
                             source_cut="plain" if mode == "paper_faithful" else "eos")
        examples = critic_examples(table, rows, self.scorer.num_classes, prompt_style)
        rng = np.random.default_rng(self.calls * count + jax.process_index())
        self.calls += 1
        losses = []
        for i in range(steps):
            # one process: at most the batch; several: exactly each one's share of the batch
            size = min(local, len(examples)) if count == 1 else local
            pick = rng.choice(len(examples), size=size, replace=size > len(examples))
            batch = apply_to_batch(Collate(tokenizer, cfg, "critic")([examples[j] for j in pick]),
                                   mode, tokenizer.eos_id)
            keys = set(self.step_fn.objective.batch_keys) | {"valid"}
            batch = partitioning.shard_batch({k: v for k, v in batch.items() if k in keys},
                                             self.mesh, batch_rows if count > 1 else None)
            self.state, metrics = self.step_fn(self.state, batch,
                                               jax.random.key(self.calls * 1000 + i))
            losses.append(float(metrics["loss"]))
        self.scorer.set_params(self.state.params, place=False)
        return float(np.mean(losses))


class CriticRefresh:
    """Collects executed rows between refreshes and refreshes the scorer's critic on schedule."""

    def __init__(self, scorer, run, mesh, rules, every: int, steps: int):
        self.scorer, self.run, self.mesh, self.rules = scorer, run, mesh, rules
        self.every, self.steps = int(every), int(steps)
        self.refresher: CriticRefresher | None = None
        self.recent: list[dict] = []

    @property
    def enabled(self) -> bool:
        return self.scorer is not None and self.every > 0

    def collect(self, rows) -> None:
        if self.enabled:
            self.recent.extend({k: r[k] for k in ("problem_id", "output_ids", "result")}
                               for r in rows)

    def due(self, step: int) -> bool:
        return self.enabled and step % self.every == 0

    def refresh(self, problems, table, tokenizer, data, batch_rows: int, mode: str,
                prompt_style: str = "train") -> float | None:
        """Refresh on the rows collected since the last time; the mean loss (None: no rows)."""
        if not self.recent:
            return None
        if self.refresher is None:
            self.refresher = CriticRefresher(self.scorer, self.run, self.mesh, self.rules)
        pids = {r["problem_id"] for r in self.recent}
        rows = self.recent + ground_truth_rows(problems, pids)
        self.recent = []
        return self.refresher.update(rows, table, tokenizer, data, self.steps, batch_rows, mode,
                                     prompt_style)

    def save(self, workdir) -> None:
        """Write the refreshed critic to `<workdir>/critic_refreshed` (when it was refreshed)."""
        if self.refresher is None or workdir is None:
            return
        params = jax.device_get(self.scorer.params) if jax.process_count() == 1 else \
            self.scorer.params
        checkpoint_io.save_model(paths.as_path(workdir) / REFRESHED_CRITIC, params,
                                 self.scorer.model_config, self.scorer.critic_config)

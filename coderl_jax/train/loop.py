"""The host training loop: restore or initialise the sharded state, feed batches from a batch
source to the jitted step, log, checkpoint.

A batch source is any iterator of host-local numpy batches (this process's rows, see
`partitioning.host_row_range`/the data pipeline's per-host slices). Optional methods:
`get_state()`/`set_state(s)` (saved with each checkpoint, so a resumed run reads the same
batches), `on_start(state)` (called once with the initial or restored state) and `on_step(state)`
(called after every update, e.g. so online RL samples with the new params). Stages differ only
in their network (`StageModel`), objective and source.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from coderl_jax import partitioning, paths
from coderl_jax.config import (
    STAGES,
    CheckpointConfig,
    CriticConfig,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
)
from coderl_jax.errors import UserError
from coderl_jax.models import t5
from coderl_jax.models.critic import T5Critic, critic_logical_axes, init_critic_params
from coderl_jax.paths import PathLike
from coderl_jax.train import state as state_lib, steps as steps_lib
from coderl_jax.train.checkpoints import Checkpointer
from coderl_jax.train.metrics import MetricWriter

# metrics averaged over the steps of a logging window (the rest: summed or last)
_MEAN_KEYS = ("loss", "accuracy", "grad_norm", "rl_loss", "ce_loss", "mean_return")


@dataclasses.dataclass
class StageModel:
    """The network a stage trains: module, configs, initialiser and logical axes of its params."""

    module: nn.Module
    model_config: ModelConfig
    critic_config: CriticConfig | None
    init_params: Callable[[jax.Array], Any]
    logical_axes: Any


def stage_model(stage: str, model_config: ModelConfig,
                critic_config: CriticConfig | None = None) -> StageModel:
    """The T5 actor (warm-up, RL) or the T5 critic (critic stage)."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if stage == "critic":
        critic_config = critic_config or CriticConfig()
        return StageModel(T5Critic(model_config, critic_config), model_config, critic_config,
                          lambda rng: init_critic_params(model_config, critic_config, rng),
                          critic_logical_axes(model_config, critic_config))
    return StageModel(t5.T5(model_config), model_config, None,
                      lambda rng: t5.init_params(model_config, rng),
                      t5.param_logical_axes(model_config))


def step_options(train: TrainConfig, model_config: ModelConfig) -> steps_lib.StepOptions:
    return steps_lib.StepOptions(
        num_microbatches=int(train.num_microbatches), dropout=bool(train.dropout),
        decoder_start_id=int(model_config.decoder_start_token_id), rl_mix=train.rl_mix,
        rl_weight=float(train.rl_weight), ce_weight=float(train.ce_weight),
        critic_pool_padding=bool(train.critic_pool_padding),
        sequence_mean=bool(train.sequence_mean))


@dataclasses.dataclass
class TrainResult:
    state: state_lib.TrainState
    start_step: int  # the step training (re)started from
    steps_run: int
    seconds: float
    tokens_per_s: float
    last_metrics: dict


class Trainer:
    """One stage's training on a mesh, with checkpoints and logs in `workdir`."""

    def __init__(self, stage: str, net: StageModel, train: TrainConfig,
                 optimizer: OptimizerConfig, mesh: Mesh, workdir: PathLike,
                 checkpoint: CheckpointConfig | None = None,
                 rules=partitioning.DEFAULT_RULES, initial_params: Any = None,
                 progress: bool = True, tensorboard: bool = True):
        self.stage, self.net, self.train_cfg = stage, net, train
        self.mesh, self.rules = mesh, tuple(rules)
        self.workdir = paths.as_path(workdir)
        self.initial_params = initial_params
        self.progress = progress
        if train.batch_size % jax.process_count():
            raise UserError(f"batch_size {train.batch_size} is not divisible by the "
                            f"{jax.process_count()} processes")
        self.tx, self.schedule = state_lib.make_optimizer(optimizer, train.num_steps)
        opts = step_options(train, net.model_config)
        self.objective = steps_lib.objective_for_stage(stage, net.module, opts)
        rng = jax.random.key(train.seed)

        def init() -> state_lib.TrainState:
            params = net.init_params(rng)
            return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                        opt_state=self.tx.init(params))

        self._init = init
        self.abstract = jax.eval_shape(init)
        self.shardings = state_lib.state_shardings(self.abstract, net.logical_axes, mesh,
                                                   self.tx, self.rules)
        self.step_fn = steps_lib.make_train_step(self.objective, self.tx, self.schedule, opts,
                                                 mesh, self.shardings, self.rules)
        self.checkpoint_cfg = checkpoint or CheckpointConfig()
        self.tensorboard = tensorboard
        self._checkpointer: Checkpointer | None = None
        self._writer: MetricWriter | None = None
        self.keys = set(self.objective.batch_keys) | set(steps_lib.OPTIONAL_KEYS)

    @property
    def checkpointer(self) -> Checkpointer:
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.workdir, self.checkpoint_cfg)
        return self._checkpointer

    @property
    def writer(self) -> MetricWriter:
        if self._writer is None:
            self._writer = MetricWriter(self.workdir, tensorboard=self.tensorboard)
        return self._writer

    def close(self) -> None:
        """Finish pending checkpoint writes and close the logs (fit does this when it ends)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---------------------------------------------------------------------------------- state
    def meta(self) -> dict:
        return {"stage": self.stage, "model": dataclasses.asdict(self.net.model_config),
                "critic": (dataclasses.asdict(self.net.critic_config)
                           if self.net.critic_config is not None else None)}

    def initial_state(self, source: Any = None) -> tuple[state_lib.TrainState, int]:
        """The latest complete checkpoint (and the source's state), else a fresh state."""
        latest = self.checkpointer.latest_step()
        if latest is not None:
            target = state_lib.abstract_state(self.shardings, self.abstract)
            state, step = self.checkpointer.restore(target, latest, data_iterator=source)
            self.writer.truncate_after(step)
            return state, step
        self.writer.truncate_after(0)
        if self.initial_params is not None:
            params = jax.device_put(self.initial_params, self.shardings.params)
            init = jax.jit(lambda p: state_lib.TrainState(
                step=jnp.zeros((), jnp.int32), params=p, opt_state=self.tx.init(p)),
                in_shardings=(self.shardings.params,), out_shardings=self.shardings)
            return init(params), 0
        return jax.jit(self._init, out_shardings=self.shardings)(), 0

    def host_batch(self, batch: dict) -> dict:
        """Keep the arrays the step reads."""
        return {k: np.asarray(v) for k, v in batch.items() if k in self.keys}

    # ----------------------------------------------------------------------------------- loop
    def fit(self, source: Iterator[dict], num_steps: int | None = None) -> TrainResult:
        """Train until `num_steps` (default: TrainConfig.num_steps) updates have been applied."""
        num_steps = int(self.train_cfg.num_steps if num_steps is None else num_steps)
        lead = jax.process_index() == 0
        state, start = self.initial_state(source)
        if hasattr(source, "on_start"):  # e.g. online RL samples with the (restored) params
            source.on_start(state)
        base_rng = jax.random.key(self.train_cfg.seed + 1)
        global_batch = self.train_cfg.batch_size
        log_every = max(int(self.train_cfg.log_every), 1)
        bar = None
        if self.progress and lead:
            from tqdm import tqdm

            bar = tqdm(total=num_steps, initial=start, desc=self.stage, unit="step",
                       file=sys.stderr, dynamic_ncols=True)
        pending: list[dict] = []
        last: dict = {}
        t_start = t_window = time.perf_counter()
        tokens_total = 0.0
        step = start
        try:
            while step < num_steps:
                try:
                    batch = next(source)
                except StopIteration:
                    raise UserError(f"the {self.stage} data ran out after {step} steps "
                                    f"(num_steps is {num_steps})") from None
                batch = partitioning.shard_batch(self.host_batch(batch), self.mesh, global_batch)
                state, metrics = self.step_fn(state, batch, jax.random.fold_in(base_rng, step))
                step += 1
                if hasattr(source, "on_step"):
                    source.on_step(state)
                pending.append(metrics)
                if step % log_every == 0 or step == num_steps:
                    now = time.perf_counter()
                    last = self._summarise(jax.device_get(pending), now - t_window)
                    tokens_total += last["tokens"]
                    pending, t_window = [], now
                    self.writer.write(step, last)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last['loss']:.4f}", refresh=False)
                if bar is not None:
                    bar.update(1)
                if self.checkpointer.should_save(step) and step < num_steps:
                    self.writer.sync()
                    self.checkpointer.save(step, state, source, self.meta(),
                                           metrics=self._best_metrics(last))
            if step > start or self.checkpointer.latest_step() != step:
                self.writer.sync()
                self.checkpointer.save(step, state, source, self.meta(),
                                       metrics=self._best_metrics(last))
        finally:
            if bar is not None:
                bar.close()
            self.close()
        seconds = time.perf_counter() - t_start
        return TrainResult(state=state, start_step=start, steps_run=step - start,
                           seconds=seconds,
                           tokens_per_s=tokens_total / seconds if seconds > 0 else 0.0,
                           last_metrics=last)

    def _best_metrics(self, last: dict) -> dict | None:
        if not self.checkpointer.cfg.keep_best:
            return None
        name = self.checkpointer.cfg.best_metric
        if name not in last:
            raise UserError(f"best_metric {name!r} is not a training metric "
                            f"(have {', '.join(sorted(last)) or 'none yet'})")
        return {name: last[name]}

    @staticmethod
    def _summarise(window: list[dict], seconds: float) -> dict:
        """Per-step metrics of a logging window -> one row (means, token count, tokens/s)."""
        out = {}
        for key in window[0]:
            values = np.asarray([float(m[key]) for m in window])
            if key in _MEAN_KEYS:
                out[key] = float(values.mean())
            elif key == "tokens":
                out[key] = float(values.sum())
            else:
                out[key] = float(values[-1])
        out["tokens_per_s"] = out.get("tokens", 0.0) / seconds if seconds > 0 else 0.0
        out["steps_per_s"] = len(window) / seconds if seconds > 0 else 0.0
        return out

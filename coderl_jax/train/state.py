"""Train state (step, params, optimizer state), the optimizer, and their shardings on a mesh."""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from coderl_jax import partitioning
from coderl_jax.config import OptimizerConfig
from coderl_jax.errors import UserError


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree, donated to each step."""

    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: Any
    opt_state: Any


def learning_rate_schedule(cfg: OptimizerConfig, num_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then constant / linear / cosine decay."""
    peak = cfg.learning_rate
    end = peak * cfg.end_learning_rate_ratio
    warmup = max(int(cfg.warmup_steps), 0)
    decay = int(cfg.decay_steps) or max(int(num_steps) - warmup, 1)
    if cfg.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif cfg.schedule == "linear":
        after = optax.linear_schedule(peak, end, decay)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, decay, alpha=cfg.end_learning_rate_ratio)
    else:
        raise UserError(f"unknown learning-rate schedule {cfg.schedule!r}; "
                        "choose constant, linear or cosine")
    if not warmup:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def _decay_mask(params: Any) -> Any:
    """Weight decay on matrices only (not layer-norm scales or biases). HF's Trainer (4.16, which
    CodeRL ran) differs on T5: it exempts only `nn.LayerNorm` modules and names with "bias", so it
    decays T5LayerNorm scales and exempts `relative_attention_bias`."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(cfg: OptimizerConfig, num_steps: int) -> tuple[optax.GradientTransformation,
                                                                  optax.Schedule]:
    """(AdamW with optional global-norm clipping, its learning-rate schedule)."""
    schedule = learning_rate_schedule(cfg, num_steps)
    parts = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=_decay_mask))
    return optax.chain(*parts), schedule


def state_shardings(abstract_state: TrainState, param_logical_axes: Any, mesh: Mesh,
                    tx: optax.GradientTransformation,
                    rules=partitioning.DEFAULT_RULES) -> TrainState:
    """Shardings of a TrainState: params by their logical axes, optimizer moments like their
    params, every other leaf (step, counts) replicated."""
    params_sh = partitioning.param_shardings(abstract_state.params, param_logical_axes, mesh, rules)
    repl = partitioning.replicated(mesh)
    opt_sh = optax.tree_map_params(
        tx, lambda _, sh: sh, abstract_state.opt_state, params_sh,
        transform_non_params=lambda _: repl,
        is_leaf=lambda x: isinstance(x, NamedSharding))
    return TrainState(step=repl, params=params_sh, opt_state=opt_sh)


def create_train_state(init_params: Callable[[jax.Array], Any], param_logical_axes: Any,
                       tx: optax.GradientTransformation, mesh: Mesh, rng: jax.Array,
                       rules=partitioning.DEFAULT_RULES) -> tuple[TrainState, TrainState]:
    """Initialise a sharded TrainState directly on the mesh: (state, its shardings).

    eval_shape -> logical specs -> shardings -> jit(init, out_shardings=...), so no host ever
    holds the full unsharded state.
    """

    def init() -> TrainState:
        params = init_params(rng)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    abstract = jax.eval_shape(init)
    shardings = state_shardings(abstract, param_logical_axes, mesh, tx, rules)
    state = jax.jit(init, out_shardings=shardings)()
    return state, shardings


def state_from_params(params: Any, param_logical_axes: Any, tx: optax.GradientTransformation,
                      mesh: Mesh, rules=partitioning.DEFAULT_RULES
                      ) -> tuple[TrainState, TrainState]:
    """A fresh TrainState (step 0, new optimizer state) around existing params, placed on `mesh`."""
    abstract_params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(jnp.shape(p), jnp.result_type(p)),
                                   params)

    def init(p) -> TrainState:
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p))

    abstract = jax.eval_shape(init, abstract_params)
    shardings = state_shardings(abstract, param_logical_axes, mesh, tx, rules)
    params = jax.device_put(params, shardings.params)
    state = jax.jit(init, in_shardings=(shardings.params,), out_shardings=shardings)(params)
    return state, shardings


def abstract_state(shardings: TrainState, abstract: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying `shardings`: the restore target for a checkpoint."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def param_count(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))

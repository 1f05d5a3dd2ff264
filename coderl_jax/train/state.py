"""Train state (step, params, optimizer state), the optimizer, and their shardings on a mesh."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

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


OPTIMIZER_RULES = ("optax", "hf_adamw")


def _decay_mask(params: Any) -> Any:
    """optax rule: weight decay on matrices only (not layer-norm scales or biases)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _hf_decay_mask(params: Any) -> Any:
    """HF Trainer's decay list (4.16 `create_optimizer`): every parameter but those named with
    "bias" or inside `nn.LayerNorm`, which T5's own T5LayerNorm is not. So on CodeRL's models the
    layer-norm scales and the embedding decay, and `relative_attention_bias` (our `relpos_bias`)
    and the error head's biases do not."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "bias" not in "/".join(str(getattr(k, "key", k)) for k in path), params)


class HFAdamWState(NamedTuple):
    count: jax.Array  # int32 scalar: updates applied so far
    mu: Any
    nu: Any


def hf_adamw(learning_rate: optax.Schedule, b1: float, b2: float, eps: float,
             weight_decay: float, mask: Callable[[Any], Any]) -> optax.GradientTransformation:
    """transformers 4.16's `AdamW` (correct_bias=True), which CodeRL's train_*.sh scripts ran
    through HF's Trainer. Against optax.adamw: `eps` is added to sqrt(v) before the bias
    correction is folded into the step size (effectively eps / sqrt(1 - b2^t) after it), and the
    decoupled decay shrinks the weights *after* the Adam step (p <- p' - lr * wd * p', p' the
    Adam-updated weights). Decay applies where `mask(params)` is True."""

    def init(params):
        zeros = lambda p: jnp.zeros_like(p, jnp.float32)
        return HFAdamWState(jnp.zeros([], jnp.int32), jax.tree.map(zeros, params),
                            jax.tree.map(zeros, params))

    def update(grads, state, params):
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, grads)
        lr = learning_rate(state.count)
        t = (state.count + 1).astype(jnp.float32)
        step_size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)

        def one(m, v, p, decay):
            adam = -step_size * m / (jnp.sqrt(v) + eps)
            out = adam - lr * weight_decay * (p + adam) if decay and weight_decay else adam
            return out.astype(p.dtype)

        updates = jax.tree.map(one, mu, nu, params, mask(params))
        return updates, HFAdamWState(state.count + 1, mu, nu)

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: OptimizerConfig, num_steps: int) -> tuple[optax.GradientTransformation,
                                                                  optax.Schedule]:
    """(AdamW with optional global-norm clipping, its learning-rate schedule); `cfg.rule` picks
    optax's AdamW (decay on matrices) or CodeRL's (`hf_adamw`, HF Trainer's decay list)."""
    rule = cfg.rule or "optax"
    if rule not in OPTIMIZER_RULES:
        raise UserError(f"unknown optimizer.rule {cfg.rule!r}; choose one of "
                        f"{', '.join(OPTIMIZER_RULES)} (or empty: by rl.mode)")
    schedule = learning_rate_schedule(cfg, num_steps)
    parts = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    if rule == "hf_adamw":
        parts.append(hf_adamw(schedule, cfg.b1, cfg.b2, cfg.eps, cfg.weight_decay,
                              _hf_decay_mask))
    else:
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

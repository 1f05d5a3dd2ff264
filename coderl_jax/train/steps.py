"""Pure, jitted, donated train steps `(state, batch, rng) -> (state, metrics)`.

An `Objective` says how one stage turns a (micro)batch into a loss: actor warm-up (token
cross-entropy), critic (outcome classification with CodeRL's max-pooled error head) and RL
(CodeRL's critic-weighted policy gradient mixed with cross-entropy on ground truth). Each
objective's loss is a sum divided by denominators computed once on the whole batch, so
accumulating gradients over microbatches (`lax.scan`) gives exactly the full-batch gradient --
except RL with `rl_mix="micro_alternate"` (rl.mode=paper_faithful), which reproduces CodeRL's
gradient accumulation instead: the update is the mean of its microbatches' losses, CE on even and
RL on odd micro-steps, each a mean over sequences of per-sequence token means.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from coderl_jax import partitioning
from coderl_jax.errors import UserError
from coderl_jax.train import losses
from coderl_jax.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How a step runs (from TrainConfig): accumulation, dropout, the RL mix, critic pooling."""

    num_microbatches: int = 1
    dropout: bool = True
    decoder_start_id: int = 0
    rl_mix: str = "sum"  # sum | alternate | micro_alternate (see rl_objective)
    rl_weight: float = 1.0
    ce_weight: float = 1.0
    critic_pool_padding: bool = False
    sequence_mean: bool = False  # warm-up CE: mean of per-sequence token means (CodeRL)


class Objective(NamedTuple):
    """A stage's loss. `loss(params, microbatch, rng, denominators, step) -> (loss, sums)`:
    every entry of `sums` is already divided by the whole-batch denominators (or is a count),
    so summing over microbatches gives the batch value. With `micro_steps`, `step` is the
    micro-step counter `update * num_microbatches + microbatch` instead of the update's step."""

    name: str
    batch_keys: tuple[str, ...]
    denominators: Callable[[Batch], dict[str, jax.Array]]
    loss: Callable[[Any, Batch, jax.Array, dict[str, jax.Array], jax.Array],
                   tuple[jax.Array, Metrics]]
    micro_steps: bool = False


def _apply(model: nn.Module, params: Any, rng: jax.Array, dropout: bool, *args, **kwargs):
    deterministic = not dropout
    rngs = None if deterministic else {"dropout": rng}
    return model.apply({"params": params}, *args, deterministic=deterministic, rngs=rngs, **kwargs)


def _count(mask: jax.Array) -> jax.Array:
    return mask.astype(jnp.float32).sum()


def _safe(d: jax.Array) -> jax.Array:
    return jnp.maximum(d, 1.0)


def _actor_terms(model, opts: StepOptions, params, rng, enc_ids, enc_mask, targets, target_mask):
    """Logits of the actor on (encoder inputs, targets) by teacher forcing."""
    decoder_input_ids = losses.shift_right(targets, opts.decoder_start_id)
    # [b, s], [b, s], [b, t], [b, t] -> [b, t, vocab]
    return _apply(model, params, rng, opts.dropout, enc_ids, enc_mask, decoder_input_ids,
                  target_mask)


def actor_objective(model: nn.Module, opts: StepOptions) -> Objective:
    """Warm-up: token cross-entropy on ground-truth programs, mean over real target tokens, or
    with `sequence_mean` the mean over sequences of per-sequence token means (CodeRL trains one
    sequence per micro-batch, so its update weighs sequences equally)."""

    def denominators(batch):
        d = {"tokens": _safe(_count(batch["target_mask"]))}
        if opts.sequence_mean:
            d["rows"] = _safe((batch["target_mask"].sum(axis=-1) > 0).sum().astype(jnp.float32))
        return d

    def loss(params, mb, rng, d, step):  # noqa: ARG001 (the objectives' shared signature)
        logits = _actor_terms(model, opts, params, rng, mb["encoder_ids"], mb["encoder_mask"],
                              mb["targets"], mb["target_mask"])
        nll, correct = losses.cross_entropy_sum(logits, mb["targets"], mb["target_mask"])
        value = nll / d["tokens"]
        if opts.sequence_mean:
            token_nll, _ = losses.token_nll_and_correct(logits, mb["targets"])
            per_row, _ = _row_means(token_nll, mb["target_mask"])  # [b]; 0 for empty rows
            value = per_row.sum() / d["rows"]
        return value, {"loss": value, "accuracy": correct / d["tokens"],
                       "tokens": _count(mb["encoder_mask"]) + _count(mb["target_mask"])}

    return Objective("warmup", ("encoder_ids", "encoder_mask", "targets", "target_mask"),
                     denominators, loss)


def critic_objective(model: nn.Module, opts: StepOptions) -> Objective:
    """Critic: cross-entropy of the max-pooled outcome logits vs the outcome class, mean over
    programs (rows with no target tokens are padding and count for nothing)."""

    def rows(batch):
        """1 for real rows, 0 for padding rows (`valid` when given, else any target token)."""
        if "valid" in batch:
            return batch["valid"].astype(jnp.float32)  # [b]
        return (batch["target_mask"].sum(axis=-1) > 0).astype(jnp.float32)  # [b]

    def denominators(batch):
        return {"rows": _safe(rows(batch).sum())}

    def loss(params, mb, rng, d, step):  # noqa: ARG001 (the objectives' shared signature)
        decoder_input_ids = losses.shift_right(mb["targets"], opts.decoder_start_id)
        # -> class logits [b, C], token logits [b, t, C]
        class_logits, _ = _apply(model, params, rng, opts.dropout, mb["encoder_ids"],
                                 mb["encoder_mask"], decoder_input_ids, mb["target_mask"],
                                 pool_padding=opts.critic_pool_padding)
        nll, correct = losses.classification_sums(class_logits, mb["labels"], rows(mb))
        value = nll / d["rows"]
        return value, {"loss": value, "accuracy": correct / d["rows"],
                       "tokens": _count(mb["encoder_mask"]) + _count(mb["target_mask"])}

    return Objective("critic", ("encoder_ids", "encoder_mask", "targets", "target_mask", "labels"),
                     denominators, loss)


GT_KEYS = ("gt_targets", "gt_target_mask")
OPTIONAL_KEYS = ("valid", "gt_encoder_ids", "gt_encoder_mask")  # read when present


def rl_objective(model: nn.Module, opts: StepOptions) -> Objective:
    """CodeRL's RL loss on sampled programs, -(mean over real tokens of return_t * log p_t),
    mixed with cross-entropy on ground-truth programs.

    Batch: `encoder_ids/encoder_mask/targets/target_mask/token_returns` of the sampled program,
    and (when ce_weight > 0 or rl_mix == "alternate") `gt_targets/gt_target_mask`, with
    `gt_encoder_ids/gt_encoder_mask` when the ground truth belongs to another problem.
    `rl_mix="sum"`: rl_weight * RL + ce_weight * CE every step; `"alternate"`: RL on even steps,
    CE on odd steps; `"micro_alternate"`: CodeRL's trainer (`micro_alternate_objective`).
    """
    if opts.rl_mix == "micro_alternate":
        return micro_alternate_objective(model, opts)
    if opts.rl_mix not in ("sum", "alternate"):
        raise UserError(f"unknown rl_mix {opts.rl_mix!r}; choose sum, alternate or "
                        f"micro_alternate")
    use_ce = opts.rl_mix == "alternate" or opts.ce_weight != 0.0

    def denominators(batch):
        d = {"tokens": _safe(_count(batch["target_mask"]))}
        if use_ce:
            d["gt_tokens"] = _safe(_count(batch["gt_target_mask"]))
        return d

    def rl_part(params, mb, rng, d):
        logits = _actor_terms(model, opts, params, jax.random.fold_in(rng, 0), mb["encoder_ids"],
                              mb["encoder_mask"], mb["targets"], mb["target_mask"])
        pg = losses.policy_gradient_sum(logits, mb["targets"], mb["target_mask"],
                                        mb["token_returns"])
        mask = mb["target_mask"].astype(jnp.float32)
        return (pg / d["tokens"], (mb["token_returns"] * mask).sum() / d["tokens"],
                _count(mb["encoder_mask"]) + _count(mask))

    def ce_part(params, mb, rng, d):
        enc_ids = mb.get("gt_encoder_ids", mb["encoder_ids"])
        enc_mask = mb.get("gt_encoder_mask", mb["encoder_mask"])
        logits = _actor_terms(model, opts, params, jax.random.fold_in(rng, 1), enc_ids, enc_mask,
                              mb["gt_targets"], mb["gt_target_mask"])
        nll, correct = losses.cross_entropy_sum(logits, mb["gt_targets"], mb["gt_target_mask"])
        return (nll / d["gt_tokens"], correct / d["gt_tokens"],
                _count(enc_mask) + _count(mb["gt_target_mask"]))

    zero = jnp.zeros((), jnp.float32)

    def rl_only(params, mb, rng, d):
        rl, ret, tok = rl_part(params, mb, rng, d)
        return rl, {"loss": rl, "rl_loss": rl, "ce_loss": zero, "accuracy": zero,
                    "mean_return": ret, "tokens": tok}

    def ce_only(params, mb, rng, d):
        ce, acc, tok = ce_part(params, mb, rng, d)
        return ce, {"loss": ce, "rl_loss": zero, "ce_loss": ce, "accuracy": acc,
                    "mean_return": zero, "tokens": tok}

    def loss(params, mb, rng, d, step):
        if opts.rl_mix == "alternate":
            return jax.lax.cond(step % 2 == 0, rl_only, ce_only, params, mb, rng, d)
        rl, ret, tok = rl_part(params, mb, rng, d)
        metrics = {"rl_loss": rl, "mean_return": ret}
        value = opts.rl_weight * rl
        if use_ce:
            ce, acc, tok_ce = ce_part(params, mb, rng, d)
            value = value + opts.ce_weight * ce
            tok = tok + tok_ce
            metrics.update(ce_loss=ce, accuracy=acc)
        else:
            metrics.update(ce_loss=zero, accuracy=zero)
        metrics.update(loss=value, tokens=tok)
        return value, metrics

    keys = ("encoder_ids", "encoder_mask", "targets", "target_mask", "token_returns")
    return Objective("rl", keys + (GT_KEYS if use_ce else ()), denominators, loss)


def _row_means(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(per-row mean of `values` over the row's real tokens [b], 1 for rows with any [b])."""
    mask = mask.astype(jnp.float32)
    count = mask.sum(axis=-1)  # [b]
    return (values * mask).sum(axis=-1) / _safe(count), (count > 0).astype(jnp.float32)


def micro_alternate_objective(model: nn.Module, opts: StepOptions) -> Objective:
    """CodeRL's RL trainer (`trainers/trainer_rl.py`, its `modeling_t5.py`): on dataloader
    micro-step s the loss is CE on the ground-truth program when s is even and the RL loss
    -(mean over tokens of return_t * log p_t) on the sampled program when s is odd, each divided
    by the accumulation count before backward; the optimizer steps every `num_microbatches`.
    CodeRL has one sequence per device, so each micro-loss is a per-sequence token mean and DDP
    averages sequences: here a microbatch's loss is the mean over its real rows of per-row
    token means. One update's loss = mean over its microbatches (with 4: 0.5 CE + 0.5 RL,
    estimated on different rows). Micro-step s = step * num_microbatches + i, so with an odd
    count the parity runs on across updates as CodeRL's epoch-long counter does. rl_weight and
    ce_weight do not apply (CodeRL has none)."""
    m = float(opts.num_microbatches)
    zero = jnp.zeros((), jnp.float32)

    def denominators(batch):  # noqa: ARG001 (the objectives' shared signature)
        return {}

    def rows_of(mb, mask_key):
        has = (mb[mask_key].sum(axis=-1) > 0).astype(jnp.float32)  # [b]
        return has * mb["valid"].astype(jnp.float32) if "valid" in mb else has

    def kind_count(micro, odd):
        """Micro-steps of this update with the parity `odd` (metrics are their means)."""
        start = (micro // opts.num_microbatches) * opts.num_microbatches
        n_odd = (start + opts.num_microbatches) // 2 - start // 2  # odd integers in the range
        n = n_odd if odd else opts.num_microbatches - n_odd
        return jnp.maximum(n, 1).astype(jnp.float32)

    def rl_micro(params, mb, rng, micro):
        logits = _actor_terms(model, opts, params, jax.random.fold_in(rng, 0), mb["encoder_ids"],
                              mb["encoder_mask"], mb["targets"], mb["target_mask"])
        logp = losses.token_log_probs(logits, mb["targets"])  # [b, t]
        returns = mb["token_returns"].astype(jnp.float32)
        per_row, _ = _row_means(-returns * logp, mb["target_mask"])  # [b]
        ret_row, _ = _row_means(returns, mb["target_mask"])
        rows = rows_of(mb, "target_mask")
        n = _safe(rows.sum())
        value = (per_row * rows).sum() / n / m
        k = kind_count(micro, True)
        mask = mb["target_mask"].astype(jnp.float32)
        return value, {"loss": value, "rl_loss": (per_row * rows).sum() / n / k,
                       "ce_loss": zero, "accuracy": zero,
                       "mean_return": (ret_row * rows).sum() / n / k,
                       "tokens": _count(mb["encoder_mask"]) + _count(mask)}

    def ce_micro(params, mb, rng, micro):
        enc_ids = mb.get("gt_encoder_ids", mb["encoder_ids"])
        enc_mask = mb.get("gt_encoder_mask", mb["encoder_mask"])
        logits = _actor_terms(model, opts, params, jax.random.fold_in(rng, 1), enc_ids, enc_mask,
                              mb["gt_targets"], mb["gt_target_mask"])
        nll, correct = losses.token_nll_and_correct(logits, mb["gt_targets"])  # [b, t] x 2
        per_row, _ = _row_means(nll, mb["gt_target_mask"])  # [b]
        acc_row, _ = _row_means(correct, mb["gt_target_mask"])
        rows = rows_of(mb, "gt_target_mask")
        n = _safe(rows.sum())
        value = (per_row * rows).sum() / n / m
        k = kind_count(micro, False)
        return value, {"loss": value, "rl_loss": zero, "ce_loss": (per_row * rows).sum() / n / k,
                       "accuracy": (acc_row * rows).sum() / n / k, "mean_return": zero,
                       "tokens": _count(enc_mask) + _count(mb["gt_target_mask"])}

    def loss(params, mb, rng, d, micro):  # noqa: ARG001 (the objectives' shared signature)
        return jax.lax.cond(micro % 2 == 0, ce_micro, rl_micro, params, mb, rng, micro)

    keys = ("encoder_ids", "encoder_mask", "targets", "target_mask", "token_returns") + GT_KEYS
    return Objective("rl", keys, denominators, loss, micro_steps=True)


def objective_for_stage(stage: str, model: nn.Module, opts: StepOptions) -> Objective:
    if stage == "warmup":
        return actor_objective(model, opts)
    if stage == "critic":
        return critic_objective(model, opts)
    if stage in ("offline_rl", "online_rl", "rl"):
        return rl_objective(model, opts)
    raise UserError(f"unknown stage {stage!r}; choose warmup, critic, offline_rl or online_rl")


def _split_microbatches(batch: Batch, m: int, mesh: Mesh | None) -> Batch:
    """[B, ...] -> [m, B/m, ...]; microbatch i takes rows i, i+m, ... so every device keeps its
    own rows (no resharding)."""

    def split(x):
        b = x.shape[0]
        y = x.reshape((b // m, m) + x.shape[1:]).swapaxes(0, 1)
        if mesh is not None:
            y = jax.lax.with_sharding_constraint(
                y, NamedSharding(mesh, P(None, partitioning.BATCH_AXES)))
        return y

    return jax.tree.map(split, batch)


def _check_batch(objective: Objective, batch: dict, num_microbatches: int,
                 divisor: int = 1) -> None:
    missing = [k for k in objective.batch_keys if k not in batch]
    if missing:
        raise UserError(f"{objective.name} batch lacks {', '.join(missing)}")
    sizes = {np.shape(v)[0] for v in batch.values()}
    if len(sizes) != 1:
        raise UserError(f"{objective.name} batch arrays disagree on the batch size: {sizes}")
    (b,) = sizes
    if b % num_microbatches:
        raise UserError(f"batch size {b} is not divisible by num_microbatches {num_microbatches}")
    if (b // num_microbatches) % divisor:
        raise UserError(f"microbatch size {b // num_microbatches} is not divisible by the "
                        f"data x fsdp mesh size {divisor}")


def accumulate_gradients(objective: Objective, params: Any, batch: Batch, rng: jax.Array,
                         step: jax.Array, num_microbatches: int = 1, mesh: Mesh | None = None,
                         param_shardings: Any = None) -> tuple[Any, Metrics]:
    """(gradient of the whole-batch loss, summed metrics), over `num_microbatches` sequential
    microbatches (`lax.scan`) so only one microbatch's activations are live at a time."""
    m = int(num_microbatches)
    batch = {k: batch[k] for k in batch if k in objective.batch_keys or k in OPTIONAL_KEYS}
    d = objective.denominators(batch)
    grad_fn = jax.value_and_grad(objective.loss, has_aux=True)

    def step_of(i):  # the step the objective sees for microbatch i
        return step * m + i if objective.micro_steps else step

    if m == 1:
        (_, sums), grads = grad_fn(params, batch, jax.random.fold_in(rng, 0), d, step_of(0))
        return grads, sums
    mbs = _split_microbatches(batch, m, mesh)
    zeros = jax.tree.map(jnp.zeros_like, params)
    if param_shardings is not None:
        zeros = jax.lax.with_sharding_constraint(zeros, param_shardings)
    first = jax.tree.map(lambda x: x[0], mbs)
    sums0 = jax.eval_shape(lambda: grad_fn(params, first, rng, d, step_of(0))[0][1])
    sums0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums0)

    def body(carry, xs):
        g_acc, s_acc = carry
        mb, i = xs
        (_, s), g = grad_fn(params, mb, jax.random.fold_in(rng, i), d, step_of(i))
        return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, s_acc, s)), None

    (grads, sums), _ = jax.lax.scan(body, (zeros, sums0), (mbs, jnp.arange(m)))
    return grads, sums


def train_step_fn(objective: Objective, tx: optax.GradientTransformation,
                  schedule: optax.Schedule, opts: StepOptions, mesh: Mesh | None = None,
                  param_shardings: Any = None):
    """The pure step `(state, batch, rng) -> (state, metrics)` (not yet jitted)."""

    def step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, Metrics]:
        grads, sums = accumulate_gradients(objective, state.params, batch, rng, state.step,
                                           opts.num_microbatches, mesh, param_shardings)
        grad_norm = optax.tree.norm(grads)  # before clipping
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(sums)
        metrics["grad_norm"] = grad_norm
        metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


class CompiledStep:
    """A jitted step on a mesh: sets the mesh and the logical-axis rules while tracing (the
    model's activation constraints resolve against them) and checks each batch's keys/shape."""

    def __init__(self, fn: Callable, mesh: Mesh, rules, objective: Objective,
                 num_microbatches: int, **jit_kwargs):
        self.mesh = mesh
        self.rules = tuple(rules)
        self.objective = objective
        self.num_microbatches = num_microbatches
        self._jitted = jax.jit(fn, **jit_kwargs)
        self._checked: set = set()

    def __call__(self, *args):
        batch = args[1]
        signature = tuple(sorted((k, np.shape(v)) for k, v in batch.items()))
        if signature not in self._checked:
            _check_batch(self.objective, batch, self.num_microbatches,
                         partitioning.batch_size_divisor(self.mesh))
            self._checked.add(signature)
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return self._jitted(*args)

    def lower(self, *args):
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return self._jitted.lower(*args)


def make_train_step(objective: Objective, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, opts: StepOptions, mesh: Mesh,
                    state_shardings: TrainState,
                    rules=partitioning.DEFAULT_RULES) -> CompiledStep:
    """`jax.jit(step, in_shardings=(state, data, replicated), out_shardings=(state, replicated),
    donate_argnums=0)` on `mesh`."""
    fn = train_step_fn(objective, tx, schedule, opts, mesh, state_shardings.params)
    repl = partitioning.replicated(mesh)
    return CompiledStep(fn, mesh, rules, objective, opts.num_microbatches,
                        in_shardings=(state_shardings, partitioning.data_sharding(mesh), repl),
                        out_shardings=(state_shardings, repl), donate_argnums=(0,))

"""Critic scores of programs: outcome-class probabilities per program and per decoder position.

What CodeRL stores as `gen_solutions_critic_scores.pkl` (`error_hidden_states`: the error head's
per-token logits; its RL dataset takes their softmax at the sample's true class). Here a jitted
forward of `T5Critic` on the mesh gives, per program row,
    probs        [C]     softmax of the max-pooled class logits (the critic's verdict)
    token_probs  [t, C]  softmax of the per-token class logits at each real program token
with C = 4 (compile error, runtime error, failed tests, passed) or 2 (not passed, passed).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coderl_jax import checkpoint_io, partitioning
from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.data.pipeline import Collate, PipelineConfig, problem_of
from coderl_jax.data.prompts import build_prompt
from coderl_jax.errors import UserError
from coderl_jax.models.critic import T5Critic, critic_logical_axes
from coderl_jax.rl.modes import apply_to_batch


def _to_host(x: jax.Array) -> np.ndarray:
    """A global array on the host (gathered across processes when it spans several)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _score_fn(module, pool_padding: bool):
    def score(params, encoder_ids, encoder_mask, targets, target_mask):
        decoder_input_ids = jnp.concatenate(  # shift_right(targets, 0): [b, t]
            [jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
        # -> [b, C], [b, t, C]
        class_logits, token_logits = module.apply(
            {"params": params}, encoder_ids, encoder_mask, decoder_input_ids, target_mask,
            deterministic=True, pool_padding=pool_padding)
        return jax.nn.softmax(class_logits, axis=-1), jax.nn.softmax(token_logits, axis=-1)

    return score


@functools.lru_cache(maxsize=None)
def _jitted_score(model_config: ModelConfig, critic_config: CriticConfig, pool_padding: bool):
    """One jitted scoring forward per critic shape, shared by every CriticScorer."""
    return jax.jit(_score_fn(T5Critic(model_config, critic_config), pool_padding))


class CriticScorer:
    """A critic's jitted scoring forward on a mesh (or one device when `mesh` is None)."""

    def __init__(self, model_config: ModelConfig, critic_config: CriticConfig, params: Any, *,
                 mesh=None, rules=None, pool_padding: bool = False, place_params: bool = True):
        self.model_config, self.critic_config = model_config, critic_config
        self.mesh = mesh
        self.rules = tuple(rules) if rules is not None else partitioning.DEFAULT_RULES
        self.pool_padding = bool(pool_padding)
        # several processes: each `score_batch` gets this host's rows only, every host calling
        # it equally often with equal shapes (online RL scores each host's own programs)
        self.process_local = False
        self.module = T5Critic(model_config, critic_config)
        self.param_shardings = None
        if mesh is not None:
            self.param_shardings = partitioning.logical_to_mesh_sharding(
                critic_logical_axes(model_config, critic_config), mesh, self.rules)
            self._divisor = partitioning.batch_size_divisor(mesh)
        else:
            self._divisor = 1
        self._fn = _jitted_score(model_config, critic_config, self.pool_padding)
        self.set_params(params, place=place_params)

    @property
    def row_divisor(self) -> int:
        """`score_batch` takes a multiple of this many rows (per host when process-local)."""
        count = jax.process_count()
        if self.process_local and count > 1:
            return max(self._divisor // count, 1)
        return self._divisor

    @property
    def num_classes(self) -> int:
        return int(self.critic_config.num_classes)

    def set_params(self, params: Any, place: bool = True) -> None:
        """Score with `params` (placed with the training shardings unless `place=False`)."""
        if place and self.param_shardings is not None:
            params = jax.device_put(params, self.param_shardings)
        self.params = params

    def _context(self):
        if self.mesh is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def score_batch(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probs [B, C], token_probs [B, T, C]) of one fixed-shape batch (B a multiple of the
        mesh's data x fsdp size)."""
        arrays = [np.asarray(batch[k]) for k in
                  ("encoder_ids", "encoder_mask", "targets", "target_mask")]
        if arrays[0].shape[0] % self.row_divisor:
            raise UserError(f"critic batch of {arrays[0].shape[0]} rows is not a multiple of "
                            f"the data x fsdp mesh size {self.row_divisor}")
        count = jax.process_count()
        if self.mesh is not None:
            sharding = partitioning.data_sharding(self.mesh)
            if self.process_local and count > 1:  # this host's rows of a global batch
                arrays = [jax.make_array_from_process_local_data(
                    sharding, a, (a.shape[0] * count,) + a.shape[1:]) for a in arrays]
            else:
                arrays = [jax.device_put(a, sharding) for a in arrays]
        with self._context():
            probs, token_probs = self._fn(self.params, *arrays)
        probs, token_probs = _to_host(probs), _to_host(token_probs)
        if self.process_local and count > 1:
            start, stop = partitioning.host_row_range(self.mesh, probs.shape[0])
            probs, token_probs = probs[start:stop], token_probs[start:stop]
        return probs, token_probs


def load_scorer(path: str, *, mesh=None, rules=None, pool_padding: bool = False) -> CriticScorer:
    """A CriticScorer for the critic checkpoint at `path` (a model folder or a training workdir)."""
    shardings = None
    if mesh is not None and checkpoint_io.is_model_dir(path):
        model_cfg, critic_cfg = checkpoint_io.read_model_config(path)
        if critic_cfg is None:
            raise UserError(f"{path} is an actor checkpoint; a critic is needed here")
        shardings = partitioning.logical_to_mesh_sharding(
            critic_logical_axes(model_cfg, critic_cfg), mesh,
            tuple(rules) if rules is not None else partitioning.DEFAULT_RULES)
    params, model_cfg, critic_cfg = checkpoint_io.load_model(path, shardings)
    if critic_cfg is None:
        raise UserError(f"{path} is an actor checkpoint; a critic is needed here")
    return CriticScorer(model_cfg, critic_cfg, params, mesh=mesh, rules=rules,
                        pool_padding=pool_padding)


def program_examples(rows: Sequence[Mapping], problems_by_id: Mapping[str, Any],
                     prompt_style: str = "train") -> list[dict]:
    """Pipeline examples (critic stage, label 0) of program rows: the problem's prompt and the
    row's `output_ids` (kept exactly) or `code`."""
    prompts: dict[str, str] = {}
    out = []
    for n, row in enumerate(rows):
        problem = problem_of(row, problems_by_id, f"program row {n}")
        ex = {"index": n, "problem_id": problem.problem_id, "label": 0}
        ids = row.get("output_ids")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise UserError(f"program row {n}: 'output_ids' must be a list of token ids")
            ex["target_ids"] = ids
        elif isinstance(row.get("code"), str):
            ex["target"] = row["code"]
        else:
            raise UserError(f"program row {n}: needs 'code' (a string) or 'output_ids'")
        if problem.problem_id not in prompts:
            prompts[problem.problem_id] = build_prompt(problem, prompt_style)
        ex["prompt"] = prompts[problem.problem_id]
        out.append(ex)
    return out


def score_rows(scorer: CriticScorer, rows: Sequence[Mapping], problems_by_id: Mapping[str, Any],
               tokenizer, *, batch_size: int = 8, max_source_len: int = 600,
               max_target_len: int = 512, mode: str = "fixed", prompt_style: str = "train",
               progress=None) -> Iterable[dict]:
    """Yield each row with `prompt_ids`, `program_ids`, `probs` and `token_probs` (SPEC §3),
    in row order. `mode="paper_faithful"` feeds EOS-padded, unmasked sources as CodeRL does;
    `prompt_style` is `prompts.build_prompt`'s."""
    examples = program_examples(rows, problems_by_id, prompt_style)
    b = -(-max(int(batch_size), 1) // scorer.row_divisor) * scorer.row_divisor
    cfg = PipelineConfig(batch_size=b, max_source_len=max_source_len,
                         max_target_len=max_target_len, shuffle=False, num_epochs=1)
    collate = Collate(tokenizer, cfg, "critic")
    for start in range(0, len(examples), b):
        chunk = examples[start: start + b]
        batch = collate(chunk)
        fed = apply_to_batch(batch, mode, tokenizer.eos_id)
        probs, token_probs = scorer.score_batch(fed)
        for r, ex in enumerate(chunk):
            row = dict(rows[ex["index"]])
            src_len = int(batch["encoder_mask"][r].sum())
            tgt_len = int(batch["target_mask"][r].sum())
            row["prompt_ids"] = batch["encoder_ids"][r, :src_len].tolist()
            row["program_ids"] = batch["targets"][r, :tgt_len].tolist()
            row["probs"] = [float(x) for x in probs[r]]
            row["token_probs"] = [[float(x) for x in p] for p in token_probs[r, :tgt_len]]
            yield row
        if progress is not None:
            progress(len(chunk))

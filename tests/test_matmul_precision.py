"""`model.matmul_precision` reaches every matmul the model runs: the train step's forward and
backward, the sampler's decode loop and the critic's scoring forward, read from their lowered
StableHLO (and from compiled HLO for the train step); "auto" resolves per backend.

These run on any backend; on a GPU, tests/test_t5.py is the parity check that the setting exists
for (`JAX_PLATFORMS=cuda pytest tests/test_t5.py` with the default "auto", i.e. "highest").
"""
from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import pytest

from coderl_jax.config import CriticConfig, ModelConfig, load_config
from coderl_jax.errors import UserError
from coderl_jax.models import t5
from coderl_jax.train.run import base_config, run_config

TINY = ModelConfig(vocab_size=128, d_model=32, d_ff=64, num_encoder_layers=1,
                   num_decoder_layers=1, num_heads=2, d_kv=16, dropout_rate=0.1)
B, S, T = 2, 8, 6
HIGHEST = jax.lax.Precision.HIGHEST


def dot_precisions(stablehlo: str) -> list[str]:
    """The operand precision of each dot_general in StableHLO text ("DEFAULT" when unstated)."""
    dots = [line for line in stablehlo.splitlines() if "stablehlo.dot_general" in line]
    found = [re.search(r"precision = \[(\w+), (\w+)\]", line) for line in dots]
    return [f"{m.group(1)},{m.group(2)}" if m else "DEFAULT,DEFAULT" for m in found]


def ints(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.int32)


def lowered_train_step(config: ModelConfig):
    """The jitted actor train step (loss, gradients, AdamW update) lowered for `config`."""
    from coderl_jax.config import OptimizerConfig
    from coderl_jax.train import state as st, steps

    tx, schedule = st.make_optimizer(OptimizerConfig(), 10)
    opts = steps.StepOptions(dropout=True)
    step = steps.train_step_fn(steps.actor_objective(t5.T5(config), opts), tx, schedule, opts)

    def init():
        params = t5.init_params(config, jax.random.key(0))
        return st.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                             opt_state=tx.init(params))

    batch = {"encoder_ids": ints(B, S), "encoder_mask": ints(B, S), "targets": ints(B, T),
             "target_mask": ints(B, T)}
    return jax.jit(step).lower(jax.eval_shape(init), batch, jax.random.key(1))


def lowered_sampling(config: ModelConfig):
    """The sampler's jitted decode loops (cache fill, cached decoder steps) lowered."""
    from coderl_jax.inference.decoding import SamplingConfig
    from coderl_jax.inference.sampler import _decode_fn

    fn = _decode_fn(config, SamplingConfig(temperature=0.8), 4, (2, 4), 2, None, ())  # 2 windows
    params = jax.eval_shape(lambda: t5.init_params(config, jax.random.key(0)))
    encoded = jax.ShapeDtypeStruct((B, S, config.d_model), jnp.float32)
    rows = jax.ShapeDtypeStruct((B,), jnp.int32)
    return fn.lower(params, encoded, ints(B, S), rows, jax.ShapeDtypeStruct((B,), jnp.uint32),
                    rows, 0, ints(B, 1), rows, prefix_len_max=0)


def lowered_scoring(config: ModelConfig):
    """The critic's jitted scoring forward (what RL's token-level returns read) lowered."""
    from coderl_jax.models.critic import init_critic_params
    from coderl_jax.rl.scoring import _jitted_score

    critic = CriticConfig(hidden=16)
    params = jax.eval_shape(lambda: init_critic_params(config, critic, jax.random.key(0)))
    return _jitted_score(config, critic, False).lower(params, ints(B, S), ints(B, S),
                                                      ints(B, T), ints(B, T))


@pytest.mark.parametrize("lower", [lowered_train_step, lowered_sampling, lowered_scoring])
def test_setting_reaches_every_matmul(lower):
    highest = dot_precisions(lower(dataclasses.replace(TINY, matmul_precision="highest"))
                             .as_text())
    default = dot_precisions(lower(dataclasses.replace(TINY, matmul_precision="default"))
                             .as_text())
    assert len(highest) >= 8 and len(highest) == len(default)  # the model's matmuls, all found
    assert set(highest) == {"HIGHEST,HIGHEST"}
    assert set(default) == {"DEFAULT,DEFAULT"}


def test_compiled_train_step_keeps_highest():
    """XLA keeps the operand precision through compilation (what a GPU would execute)."""
    def compiled_dots(precision):
        hlo = lowered_train_step(dataclasses.replace(TINY, matmul_precision=precision)) \
            .compile().as_text()
        return [line for line in hlo.splitlines() if re.search(r"= \S+ dot\(", line)]

    highest = compiled_dots("highest")
    assert highest and all("operand_precision={highest,highest}" in d for d in highest)
    assert not any("highest" in d for d in compiled_dots("default"))


def test_auto_is_highest_on_gpu_only():
    assert t5.resolve_precision("auto", "gpu") == HIGHEST
    assert t5.resolve_precision("auto", "cuda") == HIGHEST
    for backend in ("cpu", "tpu"):
        assert t5.resolve_precision("auto", backend) == jax.lax.Precision.DEFAULT
    assert t5.resolve_precision("high", "cpu") == jax.lax.Precision.HIGH
    assert t5.resolve_precision("highest", "tpu") == HIGHEST
    assert t5.matmul_precision(TINY) == t5.resolve_precision("auto", jax.default_backend())


def test_config_override_and_bad_value(tmp_path):
    cfg = base_config(size="tiny")
    assert run_config(cfg).model.matmul_precision == "auto"
    path = tmp_path / "c.py"
    path.write_text("from coderl_jax.train.run import base_config\n\n"
                    "def get_config():\n    return base_config(size='tiny')\n")
    cfg = load_config(path, ["--config.model.matmul_precision=highest"])
    assert run_config(cfg).model.matmul_precision == "highest"
    with pytest.raises(UserError, match="matmul_precision must be one of"):
        run_config(load_config(path, ["--config.model.matmul_precision=fast"]))

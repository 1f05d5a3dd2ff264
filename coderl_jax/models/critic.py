"""CodeRL's critic: the T5 backbone plus an outcome head on the decoder states (SPEC §7).

As in CodeRL's `T5ForConditionalGeneration(tuning_mode='critic')`, the head (`error_head`:
Linear d_model->hidden, ReLU, Linear hidden->classes) reads the decoder's final-layer-normed
states after the d_model^-0.5 rescale the tied LM head applies, and its per-token logits are
max-pooled over decoder positions. The decoder runs without a padding mask (CodeRL passes none;
with right padding and causal attention the real positions do not see the padding anyway), and
the pooling is over real positions unless `pool_padding=True` (CodeRL pools over all positions).

Classes: index = outcome + 2, i.e. 0 compile error, 1 runtime error, 2 failed tests, 3 passed;
the binary critic has 0 not passed, 1 passed.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.models.t5 import T5, init_params, matmul_precision

Array = jax.Array
PyTree = Any


def _torch_linear_init(fan_in: int, axes: tuple[str | None, ...]):
    """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for kernels and biases."""
    bound = fan_in ** -0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.with_logical_partitioning(init, axes)


class ErrorHead(nn.Module):
    """Per-token outcome logits: [b, t, embed] -> [b, t, classes] float32."""

    config: ModelConfig
    critic: CriticConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c, k = self.config, self.critic
        dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
        precision = matmul_precision(c)  # ModelConfig.matmul_precision, as in the backbone
        h = nn.Dense(k.hidden, dtype=dtype, param_dtype=param_dtype, name="hidden",
                     precision=precision,
                     kernel_init=_torch_linear_init(c.d_model, ("embed", "critic_hidden")),
                     bias_init=_torch_linear_init(c.d_model, ("critic_hidden",)))(x)
        # h: [b, t, hidden]
        h = nn.relu(h)
        out = nn.Dense(k.num_classes, dtype=dtype, param_dtype=param_dtype, name="out",
                       precision=precision,
                       kernel_init=_torch_linear_init(k.hidden, ("critic_hidden", "classes")),
                       bias_init=_torch_linear_init(k.hidden, ("classes",)))(h)  # [b, t, classes]
        return out.astype(jnp.float32)


class T5Critic(nn.Module):
    """(class_logits [b, classes], token_logits [b, t, classes]) of programs given problems."""

    config: ModelConfig
    critic: CriticConfig

    def setup(self):
        self.t5 = T5(self.config)
        self.error_head = ErrorHead(self.config, self.critic)

    def __call__(self, encoder_ids: Array, encoder_mask: Array | None, decoder_input_ids: Array,
                 decoder_mask: Array | None = None, *, deterministic: bool = True,
                 pool_padding: bool = False) -> tuple[Array, Array]:
        encoded = self.t5.encode(encoder_ids, encoder_mask, deterministic=deterministic)
        hidden = self.t5.decode_hidden(encoded, encoder_mask, decoder_input_ids, None,
                                       deterministic=deterministic)  # [b, t, embed]
        if self.is_initializing():
            self.t5.logits(hidden)  # create every backbone parameter (an untied LM head too)
        if self.config.tie_word_embeddings:
            hidden = hidden * (self.config.d_model ** -0.5)
        token_logits = self.error_head(hidden)  # [b, t, classes]
        if pool_padding or decoder_mask is None:
            class_logits = jnp.max(token_logits, axis=1)
        else:
            real = (decoder_mask > 0)[:, :, None]  # [b, t, 1]
            class_logits = jnp.max(jnp.where(real, token_logits, -jnp.inf), axis=1)
        return class_logits, token_logits


def init_head_params(config: ModelConfig, critic_config: CriticConfig, rng: Array) -> PyTree:
    """Fresh `error_head` parameters (torch.nn.Linear's default initialisation)."""
    x = np.zeros((1, 1, config.d_model), jnp.dtype(config.dtype))
    return nn.unbox(ErrorHead(config, critic_config).init({"params": rng}, x)["params"])


def init_critic_params(config: ModelConfig, critic_config: CriticConfig, rng: Array) -> PyTree:
    """Fresh critic parameters {'t5': ..., 'error_head': ...}, unboxed."""
    t5_rng, head_rng = jax.random.split(rng)
    return {"t5": init_params(config, t5_rng),
            "error_head": init_head_params(config, critic_config, head_rng)}


def critic_logical_axes(config: ModelConfig, critic_config: CriticConfig) -> PyTree:
    """PartitionSpecs of logical names, same structure as `init_critic_params`."""
    ids = np.ones((1, 1), np.int32)
    abstract = jax.eval_shape(lambda: T5Critic(config, critic_config).init(
        {"params": jax.random.key(0)}, ids, ids, ids, ids))
    return nn.get_partition_spec(abstract)["params"]


def critic_params_from_actor(actor_params: PyTree, config: ModelConfig,
                             critic_config: CriticConfig, rng: Array) -> PyTree:
    """A critic starting from an actor's T5 parameters and a fresh head (as CodeRL starts)."""
    return {"t5": actor_params, "error_head": init_head_params(config, critic_config, rng)}

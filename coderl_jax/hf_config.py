"""HF T5 `config.json` dicts <-> ModelConfig. Imports neither JAX nor torch, so a benchmark's
HF reference process (see `benchmarks.isolation`) builds its model from the same mapping that
`coderl convert to-hf` writes."""
from __future__ import annotations

from typing import Any

from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.errors import UserError


def model_config_from_hf(hf: dict, **overrides: Any) -> ModelConfig:
    """A ModelConfig from an HF `config.json` dict; UserError unless it is a T5 v1.0 (ReLU)
    model."""
    if hf.get("model_type") != "t5":
        raise UserError(f"not a T5 config: model_type is {hf.get('model_type')!r}, expected 't5'")
    ffn = hf.get("feed_forward_proj", "relu")
    if ffn != "relu":
        raise UserError(f"unsupported feed_forward_proj {ffn!r}: only T5 v1.0 / CodeT5 ('relu')")
    try:
        num_layers = int(hf["num_layers"])
        values = dict(
            vocab_size=int(hf["vocab_size"]),
            d_model=int(hf["d_model"]),
            d_ff=int(hf["d_ff"]),
            num_encoder_layers=num_layers,
            num_decoder_layers=int(hf.get("num_decoder_layers") or num_layers),
            num_heads=int(hf["num_heads"]),
            d_kv=int(hf["d_kv"]),
        )
    except KeyError as e:
        raise UserError(f"T5 config lacks the field {e.args[0]!r}") from e
    for name, default in (("relative_attention_num_buckets", 32),
                          ("relative_attention_max_distance", 128), ("dropout_rate", 0.1),
                          ("layer_norm_epsilon", 1e-6), ("pad_token_id", 0),
                          ("bos_token_id", 1), ("eos_token_id", 2),
                          ("decoder_start_token_id", 0)):
        value = hf.get(name)
        if value is None or isinstance(value, list):
            value = default
        values[name] = type(default)(value)
    # transformers >= 5 always ties lm_head to the embedding and records the T5 v1.0 rescale as
    # `scale_decoder_outputs`; older configs say `tie_word_embeddings: false` for "no rescale,
    # own lm_head". Ours: tied <=> rescaled, so either flag being false means an untied head.
    values["tie_word_embeddings"] = bool(hf.get("tie_word_embeddings", True)
                                         and hf.get("scale_decoder_outputs", True))
    values.update(overrides)
    return ModelConfig(**values)


def hf_config_from_model_config(config: ModelConfig, critic: CriticConfig | None = None) -> dict:
    """The `config.json` dict `transformers.T5ForConditionalGeneration` loads."""
    out = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "d_ff": config.d_ff,
        "d_kv": config.d_kv,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": True,
        "use_cache": True,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "torch_dtype": "float32",
    }
    if critic is not None:
        # Not read by transformers; records the head CodeRL's `error_head.*` keys hold.
        out["coderl_critic"] = {"num_classes": critic.num_classes, "hidden": critic.hidden}
    return out

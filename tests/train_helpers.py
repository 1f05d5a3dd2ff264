"""Shared pieces of the training tests: a tiny model, synthetic batches, a checkpointable source."""
from __future__ import annotations

import math

import numpy as np

from coderl_jax.config import ModelConfig

VOCAB = 128
TINY = ModelConfig(vocab_size=VOCAB, d_model=32, d_ff=64, num_encoder_layers=1,
                   num_decoder_layers=1, num_heads=4, d_kv=8, relative_attention_num_buckets=8,
                   relative_attention_max_distance=16, dropout_rate=0.1)


def make_batch(seed: int, batch: int = 16, src: int = 12, tgt: int = 10, stage: str = "warmup"
               ) -> dict[str, np.ndarray]:
    """Random token batch with ragged real lengths (padding at the end, masked)."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(3, src + 1, batch)
    tgt_len = rng.integers(2, tgt + 1, batch)
    enc_mask = (np.arange(src)[None] < src_len[:, None]).astype(np.int32)
    tgt_mask = (np.arange(tgt)[None] < tgt_len[:, None]).astype(np.int32)
    out = {"encoder_ids": rng.integers(3, VOCAB, (batch, src)).astype(np.int32) * enc_mask,
           "encoder_mask": enc_mask,
           "targets": rng.integers(3, VOCAB, (batch, tgt)).astype(np.int32) * tgt_mask,
           "target_mask": tgt_mask}
    if stage == "critic":
        out["labels"] = rng.integers(0, 4, batch).astype(np.int32)
        out["valid"] = np.ones(batch, np.int32)
    if stage == "rl":
        out["token_returns"] = (rng.normal(size=(batch, tgt)) * tgt_mask).astype(np.float32)
        gt_len = rng.integers(2, tgt + 1, batch)
        gt_mask = (np.arange(tgt)[None] < gt_len[:, None]).astype(np.int32)
        out["gt_targets"] = rng.integers(3, VOCAB, (batch, tgt)).astype(np.int32) * gt_mask
        out["gt_target_mask"] = gt_mask
    return out


class SyntheticSource:
    """Deterministic batches by position, with get_state/set_state (like a grain iterator).

    `rows` selects this host's rows of each global batch (multi-host runs)."""

    def __init__(self, stage: str = "warmup", batch: int = 16, rows: slice = slice(None),
                 seed: int = 100):
        self.stage, self.batch, self.rows, self.seed = stage, batch, rows, seed
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        b = make_batch(self.seed + self.position, self.batch, stage=self.stage)
        self.position += 1
        return {k: v[self.rows] for k, v in b.items()}

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


def mesh_devices(shape):
    import jax

    return jax.devices()[: math.prod(shape)]

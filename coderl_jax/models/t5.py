"""CodeT5 / T5 v1.0 encoder-decoder in Flax linen (SPEC §7), numerically matching HF `T5`.

RMS layer norm, ReLU feed-forward, relative position bias computed once per stack (in "layer 0")
and shared by all its layers, unscaled dot-product attention, tied embeddings with the
d_model^-0.5 rescale before the LM head. Every parameter carries logical axis names; activations
are constrained with logical names too, so one rules table maps the model onto any mesh.

Every matmul and einsum (forward and hand-written backward) runs at `matmul_precision(config)`
(`ModelConfig.matmul_precision`; "auto": HIGHEST on GPUs, DEFAULT on CPU and TPU).

Usage: `T5(config).apply({'params': params}, ..., method=T5.encode / T5.decode)`, or the pure
helpers below (`init_params`, `init_cache`, `decode_step`, ...), which jit cleanly.

Parameter tree (unscanned; with `scan_layers` the `layers_i` of a stack become one `layers`
subtree with a leading 'layers' axis):
  token_embedder/embedding                          [vocab, embed]
  encoder/relpos_bias/rel_embedding                  [relpos_buckets, heads]
  encoder/layers_i/{pre_attention_layer_norm, attention/{query,key,value,out}, pre_mlp_layer_norm,
                    mlp/{wi,wo}}
  encoder/encoder_norm/scale
  decoder/relpos_bias/rel_embedding
  decoder/layers_i/{pre_self_attention_layer_norm, self_attention/...,
                    pre_cross_attention_layer_norm,
                    encoder_decoder_attention/..., pre_mlp_layer_norm, mlp/{wi,wo}}
  decoder/decoder_norm/scale
  logits_dense/kernel                               [embed, vocab] (only when embeddings are untied)
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coderl_jax.config import ModelConfig
from coderl_jax.models.dropout import Dropout

Array = jax.Array
PyTree = Any

# The modes a decoder stack runs in: teacher forcing over a whole sequence, one cached step, or
# only the cross-attention key/value projections of the encoder output (to fill a cache).
FULL, STEP, CROSS_KV = "full", "step", "cross_kv"


def _normal(stddev: float):
    return nn.initializers.normal(stddev=stddev)


def _constrain(x: Array, axes: tuple[str | None, ...]) -> Array:
    return nn.with_logical_constraint(x, axes)


_PRECISIONS = {"default": jax.lax.Precision.DEFAULT, "high": jax.lax.Precision.HIGH,
               "highest": jax.lax.Precision.HIGHEST}


def resolve_precision(name: str, backend: str) -> jax.lax.Precision:
    """`ModelConfig.matmul_precision` on `backend`: "auto" is HIGHEST on GPUs (their DEFAULT
    rounds float32 operands to TF32, which loses parity with HF's float32 model) and DEFAULT on
    CPU (always full float32 there) and TPU (bfloat16 passes; its configs compute in bfloat16)."""
    if name == "auto":
        name = "highest" if backend in ("gpu", "cuda", "rocm") else "default"
    return _PRECISIONS[name]


def matmul_precision(config: ModelConfig) -> jax.lax.Precision:
    """The precision of every matmul and einsum of the model, on the backend being traced for."""
    return resolve_precision(config.matmul_precision, jax.default_backend())


def _on_cpu() -> bool:
    """Whether the computation being traced runs on XLA CPU (where `_add_bias`'s backward pays)."""
    return jax.default_backend() == "cpu"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _matmul32(spec: str, precision: jax.lax.Precision, a: Array, b: Array) -> Array:
    """A weight matmul ([..., K] x [K, N] or [..., K] x [N, K]) of same-dtype `a`, `b`,
    accumulated and returned in float32.

    Its backward (a custom VJP, written for XLA CPU) is the two contractions JAX's transpose rule
    makes, at the same precision, except that the cotangent is first cast to the operands' dtype.
    Float32 models: the cast is a no-op, the gradient is autodiff's (tested). bfloat16 models:
    the backward matmuls are bf16 x bf16 -> f32 like the forward ones, the native form of TPU
    MXUs and GPU tensor cores as well as of CPU AMX units, where a float32 cotangent against bf16
    operands would make a float32 matmul; the cost is the cotangent rounded to bfloat16, as
    mixed-precision training does anyway. So it is the same work or less on TPU/GPU (not
    measured there), and is not switchable.
    """
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32, precision=precision)


def _matmul32_fwd(spec, precision, a, b):
    return _matmul32(spec, precision, a, b), (a, b)


def _matmul32_bwd(spec, precision, residuals, g):
    # The cotangent enters in the operands' dtype, so a bfloat16 model's backward matmuls are
    # bf16 x bf16 -> f32 as well (float32 x bf16 operands would be upcast to a float32 matmul,
    # ~3x slower on CPUs with bf16 units). "A,B->C": dA = "C,B->A", dB = "A,C->B".
    a, b = residuals
    in_a, rest = spec.split(",")
    in_b, out = rest.split("->")
    g = g.astype(a.dtype)
    da = jnp.einsum(f"{out},{in_b}->{in_a}", g, b, preferred_element_type=jnp.float32,
                    precision=precision)
    db = jnp.einsum(f"{in_a},{out}->{in_b}", a, g, preferred_element_type=jnp.float32,
                    precision=precision)
    return da.astype(a.dtype), db.astype(b.dtype)


_matmul32.defvjp(_matmul32_fwd, _matmul32_bwd)


def _einsum32(spec: str, a: Array, b: Array, dtype, precision: jax.lax.Precision) -> Array:
    """einsum of `a` and `b` cast to the compute dtype, accumulated and returned in float32.

    With bfloat16 inputs this is the form XLA CPU hands to its AMX/bf16 kernels (a bf16-output
    dot is upcast to a float32 one there, ~3x slower), and what TPUs and GPUs do in hardware.
    Attention's batched contractions keep JAX's own transpose rule: XLA CPU has no bf16 x bf16
    -> f32 kernel for some of their backward layouts ("bqhd,bhqk->bkhd" at 256 tokens).
    """
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32,
                      precision=precision)


def _dot_general32(lhs: Array, rhs: Array, dimension_numbers, precision=None, **_) -> Array:
    """nn.Dense's matmul ([..., in] x [in, out]) through `_matmul32`, in the input dtype, at the
    Dense's `precision` (set by `_dense`)."""
    (contract_l, contract_r), batch = dimension_numbers
    assert contract_l == (lhs.ndim - 1,) and contract_r == (0,) and batch == ((), ()), \
        dimension_numbers
    letters = "abcdefghijklmnopqrstuvw"[:lhs.ndim - 1]
    out = _matmul32(f"{letters}y,yz->{letters}z", precision, lhs, rhs.astype(lhs.dtype))
    return out.astype(lhs.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _add_bias(precision: jax.lax.Precision, scores: Array, bias: Array) -> Array:  # noqa: ARG001
    """scores [b, h, q, k] + bias [1 | b, h, q, k] (the position bias all rows share);
    `precision` is for the backward pass."""
    return scores + bias


def _add_bias_fwd(precision, scores, bias):  # noqa: ARG001 (custom_vjp: _add_bias's arguments)
    return scores + bias, bias.shape[0]


def _add_bias_bwd(precision, bias_rows, g):
    # The bias's cotangent sums g over the batch. On XLA CPU a contraction with a ones vector
    # is one pass over g, where a plain sum gets fused with the other layers' batch-reductions
    # into one reduce that ran ~10x slower (0.23 s of a codet5-small step). Elsewhere the plain
    # sum: a reduce is one pass on TPUs and GPUs too, and the contraction would run at the
    # model's matmul precision (on a TPU, DEFAULT rounds a float32 g to bfloat16).
    if bias_rows == g.shape[0]:
        return g, g
    if not _on_cpu():
        return g, g.sum(axis=0, keepdims=True)
    ones = jnp.ones((g.shape[0],), g.dtype)
    return g, jnp.einsum("bhqk,b->hqk", g, ones, precision=precision)[None]


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
    """T5's bucket of each (memory - query) offset: exact for small, log-spaced for large."""
    ret = jnp.zeros_like(relative_position)
    n = num_buckets
    if bidirectional:
        n //= 2
        ret = ret + (relative_position > 0).astype(relative_position.dtype) * n
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = n // 2
    is_small = distance < max_exact
    # log(0) only occurs where `is_small` selects the exact branch.
    scaled = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (n - max_exact))
    large = jnp.minimum(max_exact + scaled.astype(relative_position.dtype), n - 1)
    return ret + jnp.where(is_small, distance, large)


class LayerNorm(nn.Module):
    """T5's RMS norm: no mean subtraction, no bias, computed in float32."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), jnp.dtype(c.param_dtype))
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)  # [..., 1]
        y = x32 * jax.lax.rsqrt(variance + c.layer_norm_epsilon)
        return (scale.astype(jnp.float32) * y).astype(jnp.dtype(c.dtype))


class Embed(nn.Module):
    """The shared token embedding; `attend` is the tied LM head."""

    config: ModelConfig

    def setup(self):
        c = self.config
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(_normal(1.0), ("vocab", "embed")),
            (c.vocab_size, c.d_model), jnp.dtype(c.param_dtype))

    def __call__(self, ids: Array) -> Array:
        # [b, l] -> [b, l, embed]
        x = jnp.take(self.embedding, ids, axis=0).astype(jnp.dtype(self.config.dtype))
        return _constrain(x, ("batch", "length", "embed"))

    def attend(self, x: Array) -> Array:
        # [b, l, embed] -> [b, l, vocab]
        dtype = jnp.dtype(self.config.dtype)
        return _matmul32("bld,vd->blv", matmul_precision(self.config), x.astype(dtype),
                         self.embedding.astype(dtype))


def _dense(features: int, stddev: float, axes: tuple[str | None, ...], config: ModelConfig,
           name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False, dtype=jnp.dtype(config.dtype),
                    param_dtype=jnp.dtype(config.param_dtype), dot_general=_dot_general32,
                    precision=matmul_precision(config),
                    kernel_init=nn.with_logical_partitioning(_normal(stddev), axes), name=name)


class RelativePositionBias(nn.Module):
    """Learned bias per (bucketed offset, head), added to attention scores."""

    config: ModelConfig
    bidirectional: bool

    @nn.compact
    def __call__(self, query_len: int, key_len: int, query_offset: Array | int = 0) -> Array:
        c = self.config
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(_normal(c.d_model ** -0.5), ("relpos_buckets", "heads")),
            (c.relative_attention_num_buckets, c.num_heads), jnp.dtype(c.param_dtype))
        context = jnp.arange(query_len, dtype=jnp.int32)[:, None] + query_offset  # [q, 1]
        memory = jnp.arange(key_len, dtype=jnp.int32)[None, :]  # [1, k]
        buckets = relative_position_bucket(memory - context, self.bidirectional,
                                           c.relative_attention_num_buckets,
                                           c.relative_attention_max_distance)  # [q, k]
        values = jnp.take(table, buckets, axis=0)  # [q, k, heads]
        return jnp.transpose(values, (2, 0, 1))[None].astype(jnp.float32)  # [1, heads, q, k]


class MultiHeadAttention(nn.Module):
    """Unscaled multi-head attention (T5 folds 1/sqrt(d_kv) into the query init)."""

    config: ModelConfig

    def setup(self):
        c = self.config
        inner = c.num_heads * c.d_kv
        self.query = _dense(inner, (c.d_model * c.d_kv) ** -0.5, ("embed", "joined_kv"), c, "query")
        self.key = _dense(inner, c.d_model ** -0.5, ("embed", "joined_kv"), c, "key")
        self.value = _dense(inner, c.d_model ** -0.5, ("embed", "joined_kv"), c, "value")
        self.out = _dense(c.d_model, inner ** -0.5, ("joined_kv", "embed"), c, "out")
        self.dropout = Dropout(c.dropout_rate)

    def _split_heads(self, x: Array) -> Array:
        # [b, l, heads * kv] -> [b, l, heads, kv]
        c = self.config
        x = x.reshape(*x.shape[:-1], c.num_heads, c.d_kv)
        return _constrain(x, ("batch", "length", "heads", "kv"))

    def project_q(self, x: Array) -> Array:
        return self._split_heads(self.query(x))  # [b, q, embed] -> [b, q, heads, kv]

    def project_kv(self, x: Array) -> tuple[Array, Array]:
        return self._split_heads(self.key(x)), self._split_heads(self.value(x))

    def _scores(self, q: Array, k: Array, bias: Array | None, mask: Array | None,
                k_spec: str = "bkhd") -> Array:
        # q [b,q,h,kv], k [b,k,h,kv] (or heads-first [b,h,k,kv]: k_spec "bhkd") -> f32 [b,h,q,k]
        dtype, precision = jnp.dtype(self.config.dtype), matmul_precision(self.config)
        scores = _einsum32(f"bqhd,{k_spec}->bhqk", q, k, dtype, precision)
        if bias is not None:
            scores = _add_bias(precision, scores, bias)
        if mask is not None:
            scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        return scores

    def _output(self, out: Array) -> Array:
        # [b, q, heads, kv] -> [b, q, embed]
        out = _constrain(out, ("batch", "length", "heads", "kv"))
        out = out.reshape(*out.shape[:2], -1)  # [b, q, heads * kv]
        return _constrain(self.out(out), ("batch", "length", "embed"))

    def attend(self, q: Array, k: Array, v: Array, bias: Array | None, mask: Array,
               deterministic: bool) -> Array:
        """q [b,q,h,kv], k/v [b,k,h,kv], bias [1|b,h,q,k] float32, mask bool [b|1,1,q|1,k]."""
        dtype = jnp.dtype(self.config.dtype)
        weights = jax.nn.softmax(self._scores(q, k, bias, mask), axis=-1).astype(dtype)
        weights = self.dropout(weights, deterministic=deterministic)  # [b, h, q, k]
        return self._output(_einsum32("bhqk,bkhd->bqhd", weights, v, dtype,
                                      matmul_precision(self.config)).astype(dtype))

    def attend_cached(self, q: Array, k_cache: Array, v_cache: Array, k_new: Array,
                      v_new: Array, bias_cache: Array, bias_new: Array, mask: Array) -> Array:
        """One query over cached keys, heads first [b,h,T,kv] (`mask` [1,1,1,T] marks the filled
        slots), plus its own key [b,1,h,kv]; the cache is read, never copied. Heads-first is the
        layout the batched matmuls want: a [b,T,h,kv] cache is transposed on every step."""
        dtype = jnp.dtype(self.config.dtype)
        scores = jnp.concatenate([self._scores(q, k_cache, bias_cache, mask, "bhkd"),
                                  self._scores(q, k_new, bias_new, None)], axis=-1)
        weights = jax.nn.softmax(scores, axis=-1).astype(dtype)  # [b, h, 1, T + 1]
        t = k_cache.shape[2]
        precision = matmul_precision(self.config)
        out = (_einsum32("bhqk,bhkd->bqhd", weights[..., :t], v_cache, dtype, precision)
               + _einsum32("bhqk,bkhd->bqhd", weights[..., t:], v_new, dtype, precision))
        return self._output(out.astype(dtype))

    def attend_encoded(self, q: Array, k: Array, v: Array, mask: Array) -> Array:
        """Cross-attention of one step, q [b,1,h,kv], over cached encoder keys [p,h,kv,s]
        (transposed: XLA CPU's dot against [p,h,s,kv] ran 1.5-2x slower) and values [p,h,s,kv]
        (`mask` [p,1,1,s]) of p = b / r problems whose r rows each are adjacent
        (shared layout, `init_cache`): each problem's r rows are r queries against one copy of
        its K/V, so the step reads p copies, not b. r = 1 is one copy per row."""
        dtype = jnp.dtype(self.config.dtype)
        b, p = q.shape[0], k.shape[0]
        q = q.reshape(p, b // p, *q.shape[2:])  # [p, r, h, kv]: the rows become queries
        weights = jax.nn.softmax(self._scores(q, k, None, mask, "bhdk"), axis=-1).astype(dtype)
        # heads-first out, then a swap of the small result: XLA CPU's batched dot writing
        # [p, r, h, kv] directly ran 4-5x slower (1.0 vs 0.2 ms a layer at 4 x 16 rows)
        out = _einsum32("bhqk,bhkd->bhqd", weights, v, dtype, matmul_precision(self.config))
        out = jnp.swapaxes(out, 1, 2)  # [p, h, r, kv] -> [p, r, h, kv]
        return self._output(out.reshape(b, 1, *out.shape[2:]).astype(dtype))


class Mlp(nn.Module):
    """ReLU feed-forward, no biases."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        c = self.config
        h = _dense(c.d_ff, c.d_model ** -0.5, ("embed", "mlp"), c, "wi")(x)  # [b, l, mlp]
        h = _constrain(nn.relu(h), ("batch", "length", "mlp"))
        h = Dropout(c.dropout_rate)(h, deterministic=deterministic)
        return _constrain(_dense(c.d_model, c.d_ff ** -0.5, ("mlp", "embed"), c, "wo")(h),
                          ("batch", "length", "embed"))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward. Signature shaped for nn.scan:
    (carry, xs, *consts)."""

    config: ModelConfig
    deterministic: bool = True
    mode: str = FULL

    @nn.compact
    def __call__(self, x: Array, _xs: None, bias: Array, mask: Array) -> tuple[Array, None]:
        c, det = self.config, self.deterministic
        drop = Dropout(c.dropout_rate)
        h = LayerNorm(c, name="pre_attention_layer_norm")(x)
        attention = MultiHeadAttention(c, name="attention")
        k, v = attention.project_kv(h)
        h = attention.attend(attention.project_q(h), k, v, bias, mask, det)
        x = x + drop(h, deterministic=det)
        h = Mlp(c, name="mlp")(LayerNorm(c, name="pre_mlp_layer_norm")(x), det)
        x = x + drop(h, deterministic=det)
        return _constrain(x, ("batch", "length", "embed")), None


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention, feed-forward.

    FULL: carry y [b,t,d], xs None -> (y, None).
    STEP: carry y [b,1,d], xs this layer's cache {'self_k','self_v' [b,h,T,kv], 'cross_k'
      [p,h,kv,s], 'cross_v' [p,h,s,kv]} (heads first; p = b, or the problems of the shared
      layout)
      -> (y, {'k','v': the new token's [b,1,h,kv]}).
    CROSS_KV: only projects `encoded` -> (y, {'cross_k','cross_v'}).
    """

    config: ModelConfig
    deterministic: bool = True
    mode: str = FULL

    @nn.compact
    def __call__(self, y: Array, xs: PyTree, encoded: Array | None, bias: Array | None,
                 self_mask: Array | None, cross_mask: Array):
        c, det = self.config, self.deterministic
        self_attention = MultiHeadAttention(c, name="self_attention")
        cross_attention = MultiHeadAttention(c, name="encoder_decoder_attention")
        if self.mode == CROSS_KV:
            k, v = cross_attention.project_kv(encoded)  # [b, s, heads, kv] each
            return y, {"cross_k": k, "cross_v": v}
        drop = Dropout(c.dropout_rate)

        h = LayerNorm(c, name="pre_self_attention_layer_norm")(y)
        k, v = self_attention.project_kv(h)
        q = self_attention.project_q(h)
        new_kv = None
        if self.mode == STEP:
            new_kv = {"k": k, "v": v}  # written into the cache by `decode_step`
            bias_cache, bias_new = bias
            h = self_attention.attend_cached(q, xs["self_k"], xs["self_v"], k, v, bias_cache,
                                             bias_new, self_mask)
        else:
            h = self_attention.attend(q, k, v, bias, self_mask, det)
        y = y + drop(h, deterministic=det)

        h = LayerNorm(c, name="pre_cross_attention_layer_norm")(y)
        q = cross_attention.project_q(h)
        if self.mode == STEP:
            h = cross_attention.attend_encoded(q, xs["cross_k"], xs["cross_v"], cross_mask)
        else:
            k, v = cross_attention.project_kv(encoded)
            h = cross_attention.attend(q, k, v, None, cross_mask, det)
        y = y + drop(h, deterministic=det)

        h = Mlp(c, name="mlp")(LayerNorm(c, name="pre_mlp_layer_norm")(y), det)
        y = y + drop(h, deterministic=det)
        return _constrain(y, ("batch", "length", "embed")), new_kv


def _run_layers(layer_cls, config: ModelConfig, num_layers: int, deterministic: bool, mode: str,
                carry: Array, xs: PyTree, *consts) -> tuple[Array, PyTree]:
    """Apply `num_layers` layers, looped (params layers_i) or scanned (params layers, axis 0).

    `xs` holds per-layer inputs stacked on axis 0, or (looped only) as one tuple entry per layer,
    or None; per-layer outputs come back stacked.
    """
    if config.remat and mode == FULL:
        layer_cls = nn.remat(layer_cls, prevent_cse=not config.scan_layers)
    if config.scan_layers:
        scanned = nn.scan(layer_cls, variable_axes={"params": 0},
                          split_rngs={"params": True, "dropout": True},
                          in_axes=(0,) + (nn.broadcast,) * len(consts), length=num_layers,
                          metadata_params={nn.PARTITION_NAME: "layers"})
        return scanned(config, deterministic, mode, name="layers")(carry, xs, *consts)
    outs = []
    for i in range(num_layers):
        xs_i = None if xs is None else {k: v[i] for k, v in xs.items()}
        carry, out = layer_cls(config, deterministic, mode, name=f"layers_{i}")(
            carry, xs_i, *consts)
        outs.append(out)
    if outs[0] is None:
        return carry, None
    return carry, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)


class Encoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, encoder_mask: Array, deterministic: bool) -> Array:
        """[b, s, embed] embedded tokens -> [b, s, embed] encoder output."""
        c = self.config
        s = x.shape[1]
        bias = RelativePositionBias(c, bidirectional=True, name="relpos_bias")(s, s)  # [1,h,s,s]
        mask = (encoder_mask > 0)[:, None, None, :]  # [b, 1, 1, s]
        x = Dropout(c.dropout_rate)(x, deterministic=deterministic)
        x, _ = _run_layers(EncoderLayer, c, c.num_encoder_layers, deterministic, FULL, x, None,
                           bias, mask)
        x = LayerNorm(c, name="encoder_norm")(x)
        return Dropout(c.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, y: Array | None, encoded: Array | None, encoder_mask: Array,
                 decoder_mask: Array | None, deterministic: bool, mode: str = FULL,
                 cache: PyTree = None) -> tuple[Array | None, PyTree]:
        """FULL: y [b,t,embed] -> ([b,t,embed], None); STEP: y [b,1,embed] + cache -> (y, new k/v);
        CROSS_KV: -> (None, {'cross_k','cross_v': [layers, b, s, heads, kv]})."""
        c = self.config
        cross_mask = (encoder_mask > 0)[:, None, None, :]  # [b, 1, 1, s]
        relpos = RelativePositionBias(c, bidirectional=False, name="relpos_bias")
        if mode == CROSS_KV:
            _, kv = _run_layers(DecoderLayer, c, c.num_decoder_layers, deterministic, mode,
                                jnp.zeros((), jnp.dtype(c.dtype)), None, encoded, None, None,
                                cross_mask)
            return None, kv
        if mode == STEP:
            index = cache["index"]
            max_len = cache["self_k"][0].shape[-2]  # [b, h, T, kv] of a layer
            # cached slots 0..index-1, then the token itself at relative position 0
            bias = (relpos(1, max_len, index), relpos(1, 1))  # [1, h, 1, T], [1, h, 1, 1]
            self_mask = (jnp.arange(max_len) < index)[None, None, None, :]  # [1, 1, 1, T]
            xs = {k: cache[k] for k in ("self_k", "self_v", "cross_k", "cross_v")}
        else:
            t = y.shape[1]
            bias = relpos(t, t)  # [1, h, t, t]
            self_mask = (jnp.arange(t)[:, None] >= jnp.arange(t)[None, :])[None, None]  # [1,1,t,t]
            if decoder_mask is not None:
                self_mask = self_mask & (decoder_mask > 0)[:, None, None, :]  # [b, 1, t, t]
            xs = None
        y = Dropout(c.dropout_rate)(y, deterministic=deterministic)
        y, new_kv = _run_layers(DecoderLayer, c, c.num_decoder_layers, deterministic, mode, y, xs,
                                encoded, bias, self_mask, cross_mask)
        y = LayerNorm(c, name="decoder_norm")(y)
        return Dropout(c.dropout_rate)(y, deterministic=deterministic), new_kv


class T5(nn.Module):
    """The encoder-decoder. Methods: encode, decode, decode_hidden, __call__, (cache) cross_kv,
    step."""

    config: ModelConfig

    def setup(self):
        c = self.config
        self.token_embedder = Embed(c)
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        if not c.tie_word_embeddings:
            self.logits_dense = _dense(c.vocab_size, 1.0, ("embed", "vocab"), c, "logits_dense")

    def encode(self, encoder_ids: Array, encoder_mask: Array | None = None, *,
               deterministic: bool = True) -> Array:
        """[b, s] token ids, [b, s] mask (1 = real) -> [b, s, embed]."""
        if encoder_mask is None:
            encoder_mask = jnp.ones(encoder_ids.shape, jnp.int32)
        return self.encoder(self.token_embedder(encoder_ids), encoder_mask, deterministic)

    def logits(self, hidden: Array) -> Array:
        """Decoder final states [b, t, embed] -> float32 logits [b, t, vocab]."""
        c = self.config
        if c.tie_word_embeddings:
            logits = self.token_embedder.attend(hidden * (c.d_model ** -0.5))
        else:
            logits = self.logits_dense(hidden)
        return _constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))

    def decode_hidden(self, encoded: Array, encoder_mask: Array | None, decoder_input_ids: Array,
                      decoder_mask: Array | None = None, *, deterministic: bool = True) -> Array:
        """Decoder final-layer-normed states [b, t, embed] (before the LM-head rescale)."""
        if encoder_mask is None:
            encoder_mask = jnp.ones(encoded.shape[:2], jnp.int32)
        y = self.token_embedder(decoder_input_ids)  # [b, t, embed]
        hidden, _ = self.decoder(y, encoded, encoder_mask, decoder_mask, deterministic)
        return hidden

    def decode(self, encoded: Array, encoder_mask: Array | None, decoder_input_ids: Array,
               decoder_mask: Array | None = None, *, deterministic: bool = True,
               return_hidden: bool = False):
        """Teacher-forced decoder: logits [b, t, vocab] float32 (and hidden [b, t, embed])."""
        hidden = self.decode_hidden(encoded, encoder_mask, decoder_input_ids, decoder_mask,
                                    deterministic=deterministic)
        logits = self.logits(hidden)
        return (logits, hidden) if return_hidden else logits

    def __call__(self, encoder_ids: Array, encoder_mask: Array | None, decoder_input_ids: Array,
                 decoder_mask: Array | None = None, *, deterministic: bool = True) -> Array:
        encoded = self.encode(encoder_ids, encoder_mask, deterministic=deterministic)
        return self.decode(encoded, encoder_mask, decoder_input_ids, decoder_mask,
                           deterministic=deterministic)

    def cross_kv(self, encoded: Array, encoder_mask: Array) -> PyTree:
        """Cross-attention keys/values of every decoder layer: 2 x [layers, b, s, heads, kv]."""
        _, kv = self.decoder(None, encoded, encoder_mask, None, True, CROSS_KV)
        return kv

    def step(self, cache: PyTree, token_ids: Array, encoder_mask: Array) -> tuple[Array, PyTree]:
        """One cached decoder step: [b] ids -> (logits [b, vocab], new k/v
        [layers, b, 1, h, kv])."""
        y = self.token_embedder(token_ids[:, None])  # [b, 1, embed]
        hidden, new_kv = self.decoder(y, None, encoder_mask, None, True, STEP, cache)
        return self.logits(hidden)[:, 0], new_kv


# ----------------------------------------------------------------------------- pure helpers


def _dummy_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.ones((1, 1), np.int32)  # numpy: safe to close over inside any trace
    return ids, ids, ids


def init_params(config: ModelConfig, rng: Array) -> PyTree:
    """Fresh parameters (HF T5's initialisation), unboxed, in `config.param_dtype`."""
    return _init_fn(config)(rng)


@functools.lru_cache(maxsize=16)
def _init_fn(config: ModelConfig):
    enc, mask, dec = _dummy_inputs()

    @jax.jit
    def init(rng):
        return nn.unbox(T5(config).init({"params": rng}, enc, mask, dec)["params"])

    return init


def param_logical_axes(config: ModelConfig) -> PyTree:
    """PartitionSpecs of logical axis names, same tree structure as `init_params`."""
    enc, mask, dec = _dummy_inputs()
    abstract = jax.eval_shape(
        lambda: T5(config).init({"params": jax.random.key(0)}, enc, mask, dec))
    return nn.get_partition_spec(abstract)["params"]


def shift_right(targets: Array, start_id: int) -> Array:
    """Decoder inputs for teacher forcing: [b, t] -> [b, t] = start_id, targets[:, :-1]."""
    targets = jnp.asarray(targets)
    start = jnp.full((targets.shape[0], 1), start_id, targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


def matmul_weights_in_compute_dtype(config: ModelConfig, params: PyTree) -> PyTree:
    """`params` with every matmul weight (kernels, the embedding) cast to `config.dtype`; norms
    and position biases stay as they are. The model casts these weights on use anyway, so outputs
    are unchanged; hoisting the casts out of a decode loop halves the bytes each bfloat16 step
    reads (float32 weights were re-read and re-cast on every token)."""
    dtype = jnp.dtype(config.dtype)

    def cast(path, x):
        name = getattr(path[-1], "key", None)
        return x.astype(dtype) if name in ("kernel", "embedding") else x

    return jax.tree_util.tree_map_with_path(cast, params)


def init_cache(config: ModelConfig, params: PyTree, encoded: Array, encoder_mask: Array,
               max_decode_len: int, rows_per_problem: int = 1) -> PyTree:
    """A decoding cache: zeroed self-attention K/V of `max_decode_len` slots, index 0, and the
    cross-attention K/V of `encoded` [p, s, embed], computed once here.

    `rows_per_problem` r > 1 is the shared layout: the cache decodes b = p * r rows, rows
    i*r .. i*r + r - 1 sampling problem i; the self-attention K/V is per row, the cross-attention
    K/V one copy per problem. `decode_step` then takes `encoder_mask` [p, s]."""
    c = config
    kv = T5(c).apply({"params": params}, encoded, encoder_mask, method=T5.cross_kv)
    # every K/V is stored heads first, [layers, b, heads, length, kv] (the cross-attention keys
    # transposed, [layers, p, heads, kv, length]): stacked for scanned
    # layers, else a tuple of per-layer [b, heads, length, kv] arrays (slicing a layer out of a
    # stacked cache copies it on every step)
    rows = encoded.shape[0] * int(rows_per_problem)
    shape = (c.num_decoder_layers, rows, c.num_heads, max_decode_len, c.d_kv)
    dtype = jnp.dtype(c.dtype)
    cache = {"self_k": jnp.zeros(shape, dtype), "self_v": jnp.zeros(shape, dtype),
             "cross_k": jnp.moveaxis(kv["cross_k"], 2, 4).astype(dtype),  # [layers,p,h,kv,s]
             "cross_v": _heads_first(kv["cross_v"]).astype(dtype)}
    if not c.scan_layers:
        cache = {k: tuple(v) for k, v in cache.items()}
    return {"index": jnp.zeros((), jnp.int32), **cache}


def grow_cache(cache: PyTree, length: int) -> PyTree:
    """`cache` with its self-attention K/V zero-padded to `length` slots (filled slots and index
    kept): a decode loop whose cache covers only the slots filled so far reads less per step
    (`decoding.decode`'s `windows`, `decoding.cache_windows`)."""
    def pad(x):  # [..., h, T, kv] -> [..., h, length, kv]
        widths = [(0, 0)] * x.ndim
        widths[-2] = (0, length - x.shape[-2])
        return jnp.pad(x, widths)

    return {**cache, "self_k": jax.tree.map(pad, cache["self_k"]),
            "self_v": jax.tree.map(pad, cache["self_v"])}


def _heads_first(x: Array) -> Array:
    # [layers, b, length, heads, kv] -> [layers, b, heads, length, kv]
    return jnp.swapaxes(x, 2, 3)


def decode_step(config: ModelConfig, params: PyTree, cache: PyTree, token_ids: Array,
                encoder_mask: Array) -> tuple[Array, PyTree]:
    """Feed one token per row ([b] int32) at `cache['index']`: (logits [b, vocab] f32, new cache).
    `encoder_mask` is [p, s], one row per cross-attention K/V copy (p = b unless shared).

    Steps past `max_decode_len` are the caller's to avoid (the last slot would be overwritten).
    Jit with the cache donated so its buffers are updated in place."""
    logits, new_kv = T5(config).apply({"params": params}, cache, token_ids, encoder_mask,
                                      method=T5.step)
    index = cache["index"]

    def write(slots, new):  # [layers, b, h, T, kv] (or a tuple of layers) <- [layers, b, 1, h, kv]
        new = _heads_first(new).astype(slots[0].dtype)
        if isinstance(slots, tuple):
            return tuple(jax.lax.dynamic_update_slice(s, n, (0, 0, index, 0))
                         for s, n in zip(slots, new))
        return jax.lax.dynamic_update_slice(slots, new, (0, 0, 0, index, 0))

    return logits, {**cache, "index": index + 1, "self_k": write(cache["self_k"], new_kv["k"]),
                    "self_v": write(cache["self_v"], new_kv["v"])}


def _stacks(params: PyTree) -> list[str]:
    return [name for name in ("encoder", "decoder") if name in params]


def unstack_layers(params: PyTree) -> PyTree:
    """Scanned layout (`layers` with a leading axis) -> per-layer `layers_i`; others unchanged."""
    out = dict(params)
    for stack in _stacks(params):
        s = dict(params[stack])
        if "layers" not in s:
            continue
        layers = s.pop("layers")
        n = jax.tree_util.tree_leaves(layers)[0].shape[0]
        for i in range(n):
            s[f"layers_{i}"] = jax.tree_util.tree_map(lambda a, i=i: a[i], layers)
        out[stack] = s
    return out


def stack_layers(params: PyTree) -> PyTree:
    """Per-layer `layers_i` -> scanned layout (`layers` with a leading axis); others unchanged."""
    out = dict(params)
    for stack in _stacks(params):
        s = dict(params[stack])
        names = sorted((k for k in s if k.startswith("layers_")), key=lambda k: int(k[7:]))
        if not names:
            continue
        per_layer = [s.pop(k) for k in names]
        stack_fn = np.stack if all(isinstance(a, np.ndarray) for a in
                                   jax.tree_util.tree_leaves(per_layer)) else jnp.stack
        s["layers"] = jax.tree_util.tree_map(lambda *a: stack_fn(a), *per_layer)
        out[stack] = s
    return out


def params_for_layout(params: PyTree, config: ModelConfig) -> PyTree:
    """`params` (either layout) in the layout `config.scan_layers` asks for."""
    return stack_layers(params) if config.scan_layers else unstack_layers(params)


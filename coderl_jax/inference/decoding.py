"""Autoregressive decoding: greedy, temperature, top-k and top-p (nucleus) sampling.

A `lax.while_loop` over a small `DecodeState` (one per cache window: the cache can grow between
them, `decode`'s `windows`); the model enters only through a callback
`tokens_to_logits(token_ids [b], cache) -> (logits [b, vocab], cache)` (one cached decoder step),
so the loop is testable with a stub and reusable by the sampler, RL and critical sampling.

Conventions:
- Output ids never include the decoder start token. A row is finished once it has emitted `eos_id`
  (the EOS itself is kept); afterwards it emits `pad_id` with log-prob 0. The loop exits early when
  every row is finished (or after `max_new_tokens` steps).
- Randomness is per row: row r at step t draws from `fold_in(row_keys[r], t)`, so a row's sample
  depends only on its own key and the model, never on the batch it sits in or the device count.
- Filtering follows HF `generate`: logits / temperature, then top-k, then top-p. Ties at a
  top-k/top-p boundary are all kept (the filter is a threshold on the logit value).
- `logprobs` are log p(token) under the *model* distribution (temperature 1, unfiltered): the
  quantity CodeRL's RL losses use. `sample_logprobs` are log-probs under the distribution actually
  sampled from (after temperature and filtering; 0 for greedy and forced tokens).
- An optional per-row forced prefix is teacher-forced before sampling starts (critical sampling
  regenerates continuations from a seed prefix): output position i of row r is `prefix[r, i]`
  while `i < prefix_len[r]`. Forced tokens appear in the output and get model log-probs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1e10  # large negative instead of -inf, so log-softmax never produces NaN

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen. `temperature == 0` (or `greedy`) means argmax."""

    temperature: float = 1.0
    top_p: float = 1.0  # 1.0: no nucleus filtering
    top_k: int = 0  # 0: no top-k filtering
    greedy: bool = False

    def __post_init__(self):
        if not (self.temperature >= 0.0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or int(self.top_k) != self.top_k:
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k}")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0.0

    @property
    def is_unfiltered(self) -> bool:
        """Samples from the model distribution itself (temperature 1, no top-k or top-p)."""
        return not self.is_greedy and self.temperature == 1.0 and self.top_k == 0 \
            and self.top_p >= 1.0


@flax.struct.dataclass
class DecodeState:
    """Loop carry of `decode`."""

    step: jax.Array  # [] int32: number of tokens emitted so far
    cur_token: jax.Array  # [b] int32: the token fed to the decoder at this step
    tokens: jax.Array  # [b, max_new] int32: emitted tokens (pad after EOS)
    logprobs: jax.Array  # [b, max_new] float32: model log p of each emitted token
    sample_logprobs: jax.Array  # [b, max_new] float32: log p under the sampling distribution
    done: jax.Array  # [b] bool: the row has emitted EOS
    cache: Any  # the model's decoding cache (opaque pytree)


class DecodeResult(NamedTuple):
    tokens: jax.Array  # [b, max_new] int32
    logprobs: jax.Array  # [b, max_new] float32, model distribution (temperature 1, unfiltered)
    sample_logprobs: jax.Array  # [b, max_new] float32, sampling distribution
    lengths: jax.Array  # [b] int32: tokens emitted, EOS included
    steps: jax.Array  # [] int32: decoder steps actually run (early exit makes it < max_new)


def _order_key(x: jax.Array) -> jax.Array:
    """float32 -> int32 with the same order (IEEE bits, negatives flipped). [b, V] -> [b, V]."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _smallest_key(keys: jax.Array, ok: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Per row, the smallest int32 v in [min(keys), max(keys)] with ok(v) true, for a predicate
    that is false then true as v grows (true at the max). Exact bisection over the 32 key bits:
    32 fused passes over [b, V] instead of a sort, which XLA's CPU backend makes slow.
    keys [b, V] -> [b]."""
    lo, hi = jnp.min(keys, axis=-1), jnp.max(keys, axis=-1)  # [b]

    def body(_, bounds):
        lo, hi = bounds
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        good = ok(mid)
        return jnp.where(good, lo, mid + 1), jnp.where(good, mid, hi)

    return jax.lax.fori_loop(0, 32, body, (lo, hi))[1]


def _candidate_block(v: int, k: int) -> int | None:
    """A block size for `_top_k_candidates`: a divisor of v near sqrt(v / k) (that balances the two
    top-k passes), or None when blocks would not cut the work (small v, large k)."""
    target = math.sqrt(v / k)
    divisors = [d for d in range(2, int(2 * target) + 1) if v % d == 0 and d >= target / 2]
    if not divisors or k * min(divisors, key=lambda d: abs(d - target)) * 4 > v:
        return None
    return min(divisors, key=lambda d: abs(d - target))


def _one_zero(x: jax.Array) -> jax.Array:
    """x with -0.0 as +0.0: the filters treat the two zeros as one value (a tie), so float
    comparisons and `_order_key` order agree."""
    return jnp.where(x == 0.0, jnp.zeros((), x.dtype), x)


def _top_k_candidates(x: jax.Array, k: int):
    """(the k largest values of each row, descending [b, k]; the number of values >= the k-th
    [b]) of float32 x (no NaN, one zero), reading the row once. Exact, with two small float
    `lax.top_k`s instead of one over the vocabulary (XLA CPU's top-k runs a row at a time; an
    integer one is a full sort): the V values are cut into blocks; every value among the k
    largest lies in one of the k blocks of largest maxima (else k other blocks would each hold
    a larger value), and when ties at the k-th value reach beyond those blocks, the k blocks
    already hold k values >= it. So the k largest of those k blocks are the k largest of the
    row, and unless more than k blocks reach the k-th value, they hold every value >= it."""
    b, v = x.shape
    block = _candidate_block(v, k)
    if block is None:
        top = jax.lax.optimization_barrier(jax.lax.top_k(x, k)[0])
        return top, jnp.sum(x >= top[:, -1:], axis=-1)
    blocks = x.reshape(b, v // block, block)
    block_max = jnp.max(blocks, axis=-1)  # [b, v / block]
    _, top_blocks = jax.lax.top_k(block_max, k)  # [b, k]
    cand = jnp.take_along_axis(blocks, top_blocks[:, :, None], axis=1).reshape(b, k * block)
    # without the barrier XLA CPU rewrites this top-k into a full sort of the candidates when
    # its consumers fuse (94 ms instead of ~1 ms at 64 x 1250)
    top = jax.lax.optimization_barrier(jax.lax.top_k(cand, k)[0])
    kth = top[:, -1:]
    spread = jnp.any(jnp.sum(block_max >= kth, axis=-1) > k)  # ties in unchosen blocks
    count = jax.lax.cond(spread, lambda: jnp.sum(x >= kth, axis=-1),
                         lambda: jnp.sum(cand >= kth, axis=-1))
    return top, count


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """Keep logits >= the k-th largest of each row, others -> NEG_INF. [b, V] -> [b, V]."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    x = _one_zero(logits.astype(jnp.float32))
    kth = _top_k_candidates(x, k)[0][:, -1:]  # [b, 1]
    return jnp.where(x < kth, NEG_INF, logits)


def top_k_top_p_filter(logits: jax.Array, k: int, p: float) -> jax.Array:
    """`top_p_filter(top_k_filter(logits, k), p)` computed from the k largest values only.

    The nucleus of the top-k set is a prefix of its sorted values: value j is kept when the
    probability (over the top-k set) of the values strictly above it is < p. Only the set's
    normaliser needs more: the k listed values plus any further ties at the k-th value. About
    two passes over the row (block maxima, the final mask) where the bisection of `top_k_filter`
    and `top_p_filter` made 64. [b, V] -> [b, V]"""
    x = _one_zero(logits.astype(jnp.float32))
    vals, count = _top_k_candidates(x, k)  # [b, k] descending, [b] values >= the k-th
    w = jnp.exp(vals - vals[:, :1])  # [b, k], unnormalised
    z = jnp.sum(w, axis=-1) + (count - k) * w[:, -1]  # [b]: ties beyond the list count too
    probs = w / z[:, None]  # [b, k]
    above = jnp.sum(jnp.where(vals[:, None, :] > vals[:, :, None], probs[:, None, :], 0.0),
                    axis=-1)  # [b, k]: mass of the values strictly above value j
    kept = jnp.sum(above < p, axis=-1)  # [b] >= 1: a prefix (above grows along the list)
    threshold = jnp.take_along_axis(vals, kept[:, None] - 1, axis=-1)  # [b, 1]
    return jnp.where(x < threshold, NEG_INF, logits)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
    """Keep the nucleus: the highest-probability tokens until their mass reaches `p`.

    Token j is kept when the probability mass of tokens with larger logits is < p, i.e. the
    smallest top set whose cumulative probability is >= p (ties at the boundary all kept); the
    most likely token is always kept. [b, V] -> [b, V]
    """
    if p >= 1.0:
        return logits
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [b, V]
    keys = _order_key(_one_zero(logits))  # [b, V]

    def mass_above_lt_p(v):  # [b] -> [b] bool
        return jnp.sum(jnp.where(keys > v[:, None], probs, 0.0), axis=-1) < p

    threshold = _smallest_key(keys, mass_above_lt_p)  # [b]
    return jnp.where(keys < threshold[:, None], NEG_INF, logits)


def sampling_block(v: int) -> int:
    """Tokens per block of `sample_categorical`: the divisor of v in [128, 512] nearest 256, so
    the row needs no padded copy (CodeT5's 32100: 214), else 256."""
    divisors = [d for d in range(128, 513) if v % d == 0]
    return min(divisors, key=lambda d: (abs(d - 256), d)) if divisors else 256


def sample_categorical(logits: jax.Array, u: jax.Array,
                       block: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Inverse-CDF sampling from softmax(logits) with one uniform u in [0, 1) per row.

    Two levels (a block of `block` tokens, then a token inside it) keep the cumulative sums short;
    tokens of zero probability (filtered) are never chosen. Also returns logsumexp(logits) from
    the same pass. logits [b, V], u [b] -> (tokens [b] int32, logsumexp [b]).
    """
    b, v = logits.shape
    block = block or sampling_block(v)
    nb = -(-v // block)
    top = jnp.max(logits, axis=-1)  # [b]
    w = jnp.exp(logits - top[:, None])  # [b, V], unnormalised
    if nb * block != v:
        w = jnp.pad(w, ((0, 0), (0, nb * block - v)))
    w = w.reshape(b, nb, block)  # [b, nb, block]
    block_mass = jnp.sum(w, axis=-1)  # [b, nb]
    cum = jnp.cumsum(block_mass, axis=-1)  # [b, nb]
    target = u * cum[:, -1]  # [b]
    bi = jnp.minimum(jnp.sum(cum <= target[:, None], axis=-1), nb - 1)  # [b] first cum > target
    before = jnp.take_along_axis(cum - block_mass, bi[:, None], axis=-1)[:, 0]  # [b]
    inner = jnp.take_along_axis(w, bi[:, None, None], axis=1)[:, 0]  # [b, block]
    inner_cum = jnp.cumsum(inner, axis=-1)  # [b, block]
    rest = jnp.maximum(target - before, 0.0)  # [b]
    j = jnp.sum(inner_cum <= rest[:, None], axis=-1)  # [b] first inner_cum > rest
    # rounding can push j past the block's last token of positive weight: take that token
    last = block - 1 - jnp.argmax((inner > 0)[:, ::-1], axis=-1)  # [b]
    j = jnp.minimum(j, last)
    return (bi * block + j).astype(jnp.int32), top + jnp.log(cum[:, -1])


def sampling_logits(logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """The logits actually sampled from: temperature, then top-k, then top-p. [b, V] -> [b, V]."""
    x = logits.astype(jnp.float32)
    if cfg.temperature != 1.0:
        x = x / cfg.temperature
    if 0 < cfg.top_k < x.shape[-1] and cfg.top_p < 1.0:
        return top_k_top_p_filter(x, cfg.top_k, cfg.top_p)
    x = top_k_filter(x, cfg.top_k)
    x = top_p_filter(x, cfg.top_p)
    return x


def choose_tokens(logits: jax.Array, cfg: SamplingConfig, row_keys: jax.Array,
                  step: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Next token per row, its log-prob under the sampling distribution, and that distribution's
    logsumexp (None for greedy).

    logits [b, V] float32, row_keys [b, 2] uint32 -> (tokens [b] int32, sample_logprob [b],
    logsumexp [b]). Row r uses one uniform from `fold_in(row_keys[r], step)`.
    """
    if cfg.is_greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [b]
        return tokens, jnp.zeros(tokens.shape, jnp.float32), None
    x = sampling_logits(logits, cfg)  # [b, V]
    u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, step), ()))(row_keys)  # [b]
    tokens, lse = sample_categorical(x, u)  # [b], [b]
    return tokens, jnp.take_along_axis(x, tokens[:, None], axis=-1)[:, 0] - lse, lse


def cache_windows(max_new_tokens: int, segment: int = 16, max_segments: int = 8) -> tuple[int, ...]:
    """Cache sizes for `decode`'s segments: up to `max_segments` segments of at least `segment`
    slots (a multiple of 8), the last window `max_new_tokens`. Each segment is another copy of
    the step in the compiled loop, so short decodes keep one."""
    count = min(max_segments, max(1, max_new_tokens // segment))
    seg = -(-max_new_tokens // count)
    seg = -(-seg // 8) * 8
    return tuple(range(seg, max_new_tokens, seg)) + (max_new_tokens,)


def check_windows(windows: Sequence[int], max_new_tokens: int) -> tuple[int, ...]:
    """`windows` as a tuple, () meaning (max_new_tokens,); a one-line error unless they are
    positive, increasing and end at `max_new_tokens`."""
    w = tuple(int(x) for x in windows) or (max_new_tokens,)
    if w[0] < 1 or w[-1] != max_new_tokens or any(a >= c for a, c in zip(w, w[1:])):
        raise ValueError(f"cache windows {w} must be positive and increase to max_new_tokens "
                         f"{max_new_tokens}")
    return w


def decode(tokens_to_logits: TokensToLogits, cache: Any, *, batch_size: int, max_new_tokens: int,
           sampling: SamplingConfig, row_keys: jax.Array | None = None, start_id: int = 0,
           eos_id: int | None = 2, pad_id: int = 0, prefix: jax.Array | None = None,
           prefix_len: jax.Array | None = None, windows: tuple[int, ...] = (),
           grow_cache: Callable[[Any, int], Any] | None = None) -> DecodeResult:
    """Decode up to `max_new_tokens` tokens for `batch_size` rows (see the module docstring).

    tokens_to_logits: (token_ids [b] int32, cache) -> (logits [b, V], cache).
    row_keys: [b, 2] uint32 PRNG keys, one per row (unused for greedy).
    eos_id: None never stops (always emits exactly max_new_tokens; benchmarks).
    prefix: [b, P] int32 forced tokens, prefix_len: [b] int32 how many of them each row forces.
    windows: increasing cache sizes ending at `max_new_tokens` (`cache_windows`): `cache` holds
      `windows[0]` slots, steps run while they fit, then `grow_cache(cache, windows[i])` makes
      room for the next segment, so a step reads the slots filled so far, not all of them.
      Empty: one loop over a cache of `max_new_tokens` slots.
    Jittable; `sampling`, sizes and ids are static.
    """
    b, n = batch_size, max_new_tokens
    windows = check_windows(windows, n)
    if len(windows) > 1 and grow_cache is None:
        raise ValueError(f"cache windows {windows} need grow_cache to enlarge the cache")
    if row_keys is None:
        if not sampling.is_greedy:
            raise ValueError("sampling needs row_keys")
        row_keys = jnp.zeros((b, 2), jnp.uint32)
    if prefix is not None:
        prefix = jnp.asarray(prefix, jnp.int32)  # [b, P]
        if prefix_len is None:
            prefix_len = jnp.full((b,), prefix.shape[1], jnp.int32)
        prefix_len = jnp.minimum(jnp.asarray(prefix_len, jnp.int32), prefix.shape[1])  # [b]

    state = DecodeState(
        step=jnp.zeros((), jnp.int32),
        cur_token=jnp.full((b,), start_id, jnp.int32),
        tokens=jnp.full((b, n), pad_id, jnp.int32),
        logprobs=jnp.zeros((b, n), jnp.float32),
        sample_logprobs=jnp.zeros((b, n), jnp.float32),
        done=jnp.zeros((b,), bool),
        cache=cache,
    )

    def body(s: DecodeState) -> DecodeState:
        logits, cache = tokens_to_logits(s.cur_token, s.cache)  # [b, V]
        logits = logits.astype(jnp.float32)
        token, sample_logp, sampled_lse = choose_tokens(logits, sampling, row_keys, s.step)
        if prefix is not None:
            forced = s.step < prefix_len  # [b]
            col = jnp.minimum(s.step, prefix.shape[1] - 1)
            token = jnp.where(forced, prefix[:, col], token)
            sample_logp = jnp.where(forced, 0.0, sample_logp)
        # the model distribution's normaliser: the sampled one's when they are the same
        lse = sampled_lse if sampling.is_unfiltered else jax.nn.logsumexp(logits, axis=-1)  # [b]
        model_logp = jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0] - lse  # [b]
        # rows already finished emit pad with log-prob 0
        token = jnp.where(s.done, pad_id, token)
        model_logp = jnp.where(s.done, 0.0, model_logp)
        sample_logp = jnp.where(s.done, 0.0, sample_logp)
        done = s.done if eos_id is None else (s.done | (token == eos_id))
        return DecodeState(
            step=s.step + 1,
            cur_token=token,
            tokens=jax.lax.dynamic_update_slice(s.tokens, token[:, None], (0, s.step)),
            logprobs=jax.lax.dynamic_update_slice(s.logprobs, model_logp[:, None], (0, s.step)),
            sample_logprobs=jax.lax.dynamic_update_slice(
                s.sample_logprobs, sample_logp[:, None], (0, s.step)),
            done=done,
            cache=cache,
        )

    final = state
    for i, window in enumerate(windows):
        if i:
            final = final.replace(cache=grow_cache(final.cache, window))
        final = jax.lax.while_loop(lambda s, w=window: (s.step < w) & ~jnp.all(s.done), body,
                                   final)
    if eos_id is None:
        lengths = jnp.full((b,), final.step, jnp.int32)
    else:
        is_eos = final.tokens == eos_id  # [b, n]
        first_eos = jnp.argmax(is_eos, axis=-1).astype(jnp.int32)  # [b]
        lengths = jnp.where(jnp.any(is_eos, axis=-1), first_eos + 1, final.step)
    return DecodeResult(final.tokens, final.logprobs, final.sample_logprobs, lengths, final.step)

"""Sampling at scale: N programs per problem from a T5 actor, jitted and sharded over a mesh.

Per call (`Sampler.sample`):
- rows are laid out [problems, rows_per_problem] (the shared layout): a request's sample indices
  are cut into pieces of r rows (`rows_per_problem`, chosen per call unless fixed; the last piece
  of a request is padded with repeats, discarded), and a decode chunk of `batch_size` rows holds
  batch_size / r pieces. The decoder's cross-attention reads one copy of each piece's K/V (r rows
  are r queries against it), not one per row; the self-attention cache is per row;
- problems are taken in groups of G (G pieces-per-problem a multiple of the chunk's pieces when it
  can be); each group's prompts are encoded once (`T5.encode`, one jit per (G, source bucket));
- a chunk gathers the encoder states and mask of its pieces' problems on device (`jnp.take` over
  the group, no re-encoding), builds the KV cache (cross-attention K/V once per piece) and runs
  the `decoding.decode` while-loops, all in one jit per (G, source bucket, batch, r, prefix
  bucket); the self-attention cache grows in windows (`decoding.cache_windows`: 16, 32, ..., 128
  slots for 128 new tokens), so a step reads the slots filled so far, not all of them;
- rows are split over the mesh's data axes (`data_sharding`), pieces with them (r divides the
  rows of a device, so a piece's rows and its K/V sit on one device), params placed with the
  training rules; source lengths are bucketed (64, 128, 256, 512, max) to bound recompiles.
- Randomness: row (problem key, sample index) draws from
  `fold_in(fold_in(PRNGKey(seed), crc32(key)), sample_index)`, so the samples do not depend on the
  batch size, the layout, the grouping, the order of problems, resumption or the device count.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import zlib
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from coderl_jax import partitioning
from coderl_jax.config import ModelConfig
from coderl_jax.data.prompts import truncate_prompt
from coderl_jax.inference import decoding
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.models import t5

SOURCE_BUCKETS = (64, 128, 256, 512)
PREFIX_BUCKETS = (8, 32, 128, 512)


@dataclasses.dataclass(frozen=True)
class SampleRequest:
    """One prompt to sample for. `key` names it for the rng (a problem id); `prefix_ids` are
    decoder tokens forced before sampling starts (critical sampling), returned in the output."""

    key: str
    prompt_ids: Sequence[int]
    sample_indices: Sequence[int] = (0,)
    prefix_ids: Sequence[int] = ()


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated program: `output_ids` end at and include EOS if it was produced."""

    request_index: int
    sample_index: int
    output_ids: list[int]
    logprobs: list[float]  # model log p of each output token (temperature 1, unfiltered)

    @property
    def logprob(self) -> float:
        return float(np.sum(self.logprobs, dtype=np.float64))


def bucket(n: int, buckets: Sequence[int], cap: int) -> int:
    """The smallest bucket >= n (buckets above `cap` dropped, `cap` itself always a bucket)."""
    for b in sorted({*(x for x in buckets if x < cap), cap}):
        if n <= b:
            return b
    return cap


def row_key_hash(key: str) -> int:
    """A stable 31-bit hash of a request key (problem id) for `fold_in`."""
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


def group_size(batch_size: int, num_samples: int) -> int:
    """Problems encoded together: the fewest G <= batch_size with G * num_samples a multiple of
    batch_size, so chunks of a group are always full."""
    return batch_size // math.gcd(batch_size, num_samples)


# The cost of one cross-attention K/V copy per decode step relative to one row's other work
# (weights, self-attention, sampling) in `choose_rows_per_problem`. At codet5-small with 256
# source tokens a copy is ~6 MB (float32), read every step; a row's share of the weight
# matmuls is ~85 MFLOP: about equal on a CPU that reads ~10 GB/s and computes ~100 GFLOP/s.
CROSS_KV_COST = 1.0


def choose_rows_per_problem(rows: int, counts: Sequence[int]) -> int:
    """Rows of one problem per piece of the shared layout: the divisor r of `rows` (a decode
    chunk's rows on one device: pieces never straddle devices) that minimises the work of
    decoding `counts[i]` samples of each problem, sum(ceil(n / r) * r) rows (padding included)
    * (1 + CROSS_KV_COST / r) (each r rows read one K/V copy); ties go to the larger r."""
    best, best_cost = 1, math.inf
    for r in range(1, rows + 1):
        if rows % r:
            continue
        decoded = sum(-(-n // r) * r for n in counts)
        cost = decoded * (1.0 + CROSS_KV_COST / r)
        if cost <= best_cost:
            best, best_cost = r, cost
    return best


def _to_host(x: jax.Array) -> np.ndarray:
    """A global array on the host (gathered across processes on multi-host meshes)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _rules(rules: tuple):
    """Logical-axis rules for tracing (model activations are logically constrained)."""
    return nn.logical_axis_rules(rules) if rules else contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def _encode_fn(config: ModelConfig, mesh: jax.sharding.Mesh | None, rules: tuple):  # noqa: ARG001
    """Jitted encoder, shared by every Sampler of this model config, mesh and rules (`mesh`
    only keys the cache: the shardings follow from the rules under the caller's mesh)."""
    model = t5.T5(config)

    def encode(params, encoder_ids, encoder_mask):  # [G, S] -> [G, S, d_model]
        with _rules(rules):
            return model.apply({"params": params}, encoder_ids, encoder_mask,
                               method=t5.T5.encode)

    return jax.jit(encode)


@functools.lru_cache(maxsize=None)
def _decode_fn(config: ModelConfig, sampling: SamplingConfig, max_new_tokens: int,
               windows: tuple[int, ...], eos_id: int | None,
               row_sharding: jax.sharding.Sharding | None, rules: tuple):
    """Jitted (gather the pieces' encoder states, build the cache, decode loop), shared by
    Samplers of equal settings; one compile per (group, source bucket, pieces, batch, prefix
    bucket) shape. Rows p*r .. p*r + r - 1 sample the problem of piece p (r = rows / pieces)."""
    def decode(params, encoded, encoder_mask, piece_slot, row_hash, row_sample, seed, prefix,
               prefix_len, *, prefix_len_max):
        with _rules(rules):
            return _decode(params, encoded, encoder_mask, piece_slot, row_hash, row_sample, seed,
                           prefix, prefix_len, prefix_len_max)

    def _decode(params, encoded, encoder_mask, piece_slot, row_hash, row_sample, seed, prefix,
                prefix_len, prefix_len_max):
        b, pieces = row_hash.shape[0], piece_slot.shape[0]
        # the pieces' problems: [G, S, d] -> [pieces, S, d], [G, S] -> [pieces, S]
        enc = jnp.take(encoded, piece_slot, axis=0)
        mask = jnp.take(encoder_mask, piece_slot, axis=0)
        if row_sharding is not None:  # pieces split like their rows (r divides a shard's rows)
            enc = jax.lax.with_sharding_constraint(enc, row_sharding)
            mask = jax.lax.with_sharding_constraint(mask, row_sharding)
        base = jax.random.PRNGKey(seed)

        def row_key(h, s):  # uint32 [], int32 [] -> [2] uint32
            return jax.random.fold_in(jax.random.fold_in(base, h), s)

        row_keys = jax.vmap(row_key)(row_hash, row_sample)  # [B, 2]
        params = t5.matmul_weights_in_compute_dtype(config, params)  # cast once, not per token
        cache = t5.init_cache(config, params, enc, mask, windows[0], rows_per_problem=b // pieces)

        def tokens_to_logits(token_ids, cache):  # [B] -> [B, V]
            return t5.decode_step(config, params, cache, token_ids, mask)

        res = decoding.decode(
            tokens_to_logits, cache, batch_size=b, max_new_tokens=max_new_tokens,
            sampling=sampling, row_keys=row_keys, start_id=config.decoder_start_token_id,
            eos_id=eos_id, pad_id=config.pad_token_id,
            prefix=prefix if prefix_len_max else None,
            prefix_len=prefix_len if prefix_len_max else None, windows=windows,
            grow_cache=t5.grow_cache)
        return res.tokens, res.logprobs, res.lengths

    return jax.jit(decode, static_argnames=("prefix_len_max",))


class Sampler:
    """Jitted encoder + decode loop for one model, params and mesh (see the module docstring)."""

    def __init__(self, config: ModelConfig, params: Any, *, mesh: jax.sharding.Mesh | None = None,
                 rules: Sequence[tuple[str, Any]] | None = None, batch_size: int = 8,
                 max_new_tokens: int = 512, max_source_len: int = 600,
                 sampling: SamplingConfig = SamplingConfig(), stop_at_eos: bool = True,
                 source_buckets: Sequence[int] = SOURCE_BUCKETS,
                 rows_per_problem: int | None = None,
                 cache_windows: Sequence[int] | None = None):
        """`rows_per_problem`: rows per cross-attention K/V copy (the shared layout; a divisor of
        the rows per device, batch_size / row shards; 1 = a copy per row); None chooses it per
        `sample` call from the requests' sample counts (`choose_rows_per_problem`).
        `cache_windows`: the self-attention cache sizes the decode loop grows through
        (`decoding.decode`); None: `decoding.cache_windows(max_new_tokens)`."""
        self.config = config
        self.mesh = mesh
        self.max_new_tokens = int(max_new_tokens)
        self.max_source_len = int(max_source_len)
        self.source_buckets = tuple(source_buckets)
        self.eos_id = config.eos_token_id if stop_at_eos else None
        if mesh is not None:
            self.rules = tuple(rules) if rules is not None else partitioning.DEFAULT_RULES
            self.row_sharding = partitioning.data_sharding(mesh)
            self.num_row_shards = int(np.prod([mesh.shape[a] for a in ("data", "fsdp")
                                               if a in mesh.shape]))
            self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            self.param_shardings = partitioning.logical_to_mesh_sharding(
                t5.param_logical_axes(config), mesh, self.rules)
        else:
            self.rules = tuple(rules) if rules is not None else ()
            self.row_sharding = self.replicated = None
            self.num_row_shards = 1
            self.param_shardings = None
        self.set_params(params)
        # rows per decode call: a multiple of the row shards
        self.batch_size = -(-int(batch_size) // self.num_row_shards) * self.num_row_shards
        self.rows_per_shard = self.batch_size // self.num_row_shards
        if rows_per_problem is not None and (rows_per_problem < 1
                                             or self.rows_per_shard % rows_per_problem):
            raise ValueError(f"rows_per_problem {rows_per_problem} must divide the rows each "
                             f"device decodes per call ({self.rows_per_shard})")
        self.rows_per_problem = rows_per_problem
        if sampling.is_greedy:  # one canonical greedy config: one compile for all spellings
            sampling = SamplingConfig(greedy=True)
        self.sampling = sampling
        self._encode = _encode_fn(config, mesh, self.rules)
        self.cache_windows = decoding.check_windows(
            cache_windows or decoding.cache_windows(self.max_new_tokens), self.max_new_tokens)
        self._decode = _decode_fn(config, sampling, self.max_new_tokens, self.cache_windows,
                                  self.eos_id, self.row_sharding, self.rules)

    # ---- device functions -------------------------------------------------------------------

    def _context(self):
        """The mesh in context while calling (and tracing) the jitted functions."""
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def set_params(self, params: Any) -> None:
        """Sample from new parameters (same config) without recompiling (RL loops)."""
        self.params = params if self.param_shardings is None else \
            jax.device_put(params, self.param_shardings)

    def _put_rows(self, x: np.ndarray):
        return x if self.row_sharding is None else jax.device_put(x, self.row_sharding)

    def _put_group(self, x: np.ndarray):
        if self.mesh is None:
            return x
        if x.shape[0] % self.num_row_shards == 0:
            return jax.device_put(x, self.row_sharding)
        return jax.device_put(x, self.replicated)

    def encode_group(self, prompts: Sequence[Sequence[int]], slots: int):
        """Encode up to `slots` prompts (padded to a source bucket). -> (encoded, mask) on
        device."""
        ids = [truncate_prompt(p, self.max_source_len, self.config.eos_token_id) for p in prompts]
        s = bucket(max(len(p) for p in ids), self.source_buckets, self.max_source_len)
        enc_ids = np.zeros((slots, s), np.int32)
        enc_mask = np.zeros((slots, s), np.int32)
        for i, p in enumerate(ids):
            enc_ids[i, : len(p)] = p
            enc_mask[i, : len(p)] = 1
        enc_ids[len(ids):, 0] = self.config.eos_token_id  # empty slots: one real token
        enc_mask[len(ids):, 0] = 1
        enc_ids, enc_mask = self._put_group(enc_ids), self._put_group(enc_mask)
        with self._context():
            encoded = self._encode(self.params, enc_ids, enc_mask)
        return encoded, enc_mask

    def decode_rows(self, encoded, encoder_mask, row_slot: np.ndarray, row_hash: np.ndarray,
                    row_sample: np.ndarray, seed: int, prefixes: Sequence[Sequence[int]] | None,
                    rows_per_problem: int = 1):
        """One decode call over exactly `batch_size` rows -> host (tokens, logprobs, lengths).
        `row_slot[i]` is row i's slot in `encoded`; with `rows_per_problem` r, rows
        p*r .. p*r + r - 1 share a slot and read one copy of its cross-attention K/V."""
        b, r = self.batch_size, int(rows_per_problem)
        row_slot = np.asarray(row_slot)
        if self.rows_per_shard % r:
            raise ValueError(f"rows_per_problem {r} must divide the rows each device decodes "
                             f"per call ({self.rows_per_shard})")
        if np.any(row_slot.reshape(-1, r) != row_slot[::r, None]):
            raise ValueError(f"rows_per_problem {r}: every {r} adjacent rows must share a slot")
        plen_max = max((len(p) for p in prefixes), default=0) if prefixes else 0
        if plen_max > self.max_new_tokens:
            raise ValueError(f"a forced prefix of {plen_max} tokens exceeds max_new_tokens "
                             f"{self.max_new_tokens}")
        pb = bucket(plen_max, PREFIX_BUCKETS, self.max_new_tokens) if plen_max else 0
        prefix = np.zeros((b, max(pb, 1)), np.int32)
        prefix_len = np.zeros((b,), np.int32)
        if plen_max:
            for i, p in enumerate(prefixes):
                prefix[i, : len(p)] = p
                prefix_len[i] = len(p)
        with self._context():
            tokens, logprobs, lengths = self._decode(
                self.params, encoded, encoder_mask,
                self._put_group(row_slot[::r].astype(np.int32)),
                self._put_rows(row_hash.astype(np.uint32)),
                self._put_rows(row_sample.astype(np.int32)), np.int32(seed),
                self._put_rows(prefix), self._put_rows(prefix_len), prefix_len_max=pb)
        return _to_host(tokens), _to_host(logprobs), _to_host(lengths)

    # ---- host loop ----------------------------------------------------------------------------

    def sample(self, requests: Sequence[SampleRequest], seed: int = 0) -> Iterator[Sample]:
        """Yield one `Sample` per (request, sample index), chunk by chunk as they finish."""
        requests = [r for r in requests if len(r.sample_indices)]
        if not requests:
            return
        counts = [len(r.sample_indices) for r in requests]
        r = self.rows_per_problem or choose_rows_per_problem(self.rows_per_shard, counts)
        per_chunk = self.batch_size // r  # pieces (cross-attention K/V copies) per chunk
        g = min(group_size(per_chunk, -(-max(counts) // r)), len(requests), self.batch_size)
        for start in range(0, len(requests), g):
            group = requests[start: start + g]
            encoded, enc_mask = self.encode_group([q.prompt_ids for q in group], slots=g)
            # pieces of r rows of one problem; a short last piece repeats its first row
            pieces = []
            for slot, q in enumerate(group):
                idx = list(q.sample_indices)
                for c in range(0, len(idx), r):
                    real = idx[c: c + r]
                    pieces.append((slot, real + [real[0]] * (r - len(real)), len(real)))
            for c in range(0, len(pieces), per_chunk):
                chunk = pieces[c: c + per_chunk]
                padded = chunk + [(chunk[0][0], chunk[0][1], 0)] * (per_chunk - len(chunk))
                slot = np.repeat([sl for sl, _, _ in padded], r)
                sidx = np.array([s for _, ss, _ in padded for s in ss])
                hashes = np.array([row_key_hash(group[sl].key) for sl in slot], np.uint32)
                prefixes = [list(group[sl].prefix_ids) for sl in slot]
                if not any(prefixes):
                    prefixes = None
                tokens, logprobs, lengths = self.decode_rows(
                    encoded, enc_mask, slot, hashes, sidx, seed, prefixes, rows_per_problem=r)
                for p, (sl, ss, n_real) in enumerate(chunk):
                    for i in range(p * r, p * r + n_real):
                        n = int(lengths[i])
                        yield Sample(start + sl, int(sidx[i]), tokens[i, :n].tolist(),
                                     logprobs[i, :n].tolist())

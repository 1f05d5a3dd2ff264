"""Dropout whose random bits are cheap on every backend.

JAX lowers threefry2x32 on CPU as a rolled `while` loop (to keep compile times short), so each
of its 5 round groups writes the whole counter array to memory and back, and flax's `nn.Dropout`
turns the bits into float32 uniforms first. On a 2-core CPU that made dropout a quarter of a
codet5-small training step. Here the same threefry2x32 (Salmon et al., 2011) is written out as
plain uint32 arithmetic that XLA fuses into one pass, ~15x faster on CPU, and the keep-mask
compares the bits with an integer threshold. The bits are exactly `jax.random.bits`'s (pinned
in tests), so TPU/GPU runs draw the same masks they always would.

On TPU/GPU it is neutral, so not switchable: JAX's own lowering there is already the unrolled
arithmetic written here (on GPU unless `jax_threefry_gpu_kernel_lowering` asks for its CUDA
kernel), and the integer threshold saves the float conversion on every backend. Not measured
on TPU/GPU.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: Array, r: int) -> Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds, unrolled: key words k0, k1 (uint32 scalars), counter words
    x0, x1 (uint32 arrays of one shape) -> two uint32 arrays of that shape."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _is_threefry(rng: Array) -> bool:
    """A threefry key (typed, or a raw uint32[2]) under partitionable bit generation."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        threefry = str(jax.random.key_impl(rng)) == "threefry2x32"
    else:
        threefry = rng.shape == (2,)
    return threefry and jax.config.jax_threefry_partitionable


def _key_words(rng: Array) -> tuple[Array, Array]:
    data = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
    return data[0], data[1]


def random_bits(rng: Array, shape: tuple[int, ...]) -> Array:
    """uint32 random bits of `shape`: element i (row-major) is y0 ^ y1 of threefry(key, (0, i)),
    which is what `jax.random.bits(rng, shape)` returns for a threefry key under JAX's default
    `jax_threefry_partitionable` (pinned in tests). Each element depends only on its position, so
    a shard computes its own slice. Larger than 2^32 elements: `jax.random.bits` itself."""
    size = int(np.prod(shape))
    if size >= 2 ** 32 or not _is_threefry(rng):
        return jax.random.bits(rng, shape, jnp.uint32)
    k0, k1 = _key_words(rng)
    index = jnp.zeros(shape, jnp.uint32)  # row-major position of each element
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    y0, y1 = threefry2x32(k0, k1, jnp.zeros_like(index), index)
    return y0 ^ y1


def drop(x: Array, rate: float, rng: Array) -> Array:
    """Inverted dropout: zero each element with probability round(rate * 2^32) / 2^32 and scale
    the rest by 1 / (1 - rate)."""
    threshold = round(rate * 2 ** 32)
    if threshold <= 0:
        return x
    if threshold >= 2 ** 32:
        return jnp.zeros_like(x)
    keep = random_bits(rng, x.shape) >= np.uint32(threshold)
    scale = jnp.asarray(2 ** 32 / (2 ** 32 - threshold), x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout` (rng collection 'dropout') using `drop`."""

    rate: float

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        if deterministic or self.rate == 0.0:
            return x
        return drop(x, self.rate, self.make_rng("dropout"))

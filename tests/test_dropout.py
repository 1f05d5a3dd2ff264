"""The model's dropout: the same bits as jax.random.bits, the right rate and scale, per-shard."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from coderl_jax.models import dropout


def test_unrolled_threefry_equals_jax():
    key = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    count = jnp.arange(2000, dtype=jnp.uint32) * jnp.uint32(2654435761)  # spread over 32 bits
    x0, x1 = count[:1000], count[1000:]
    y0, y1 = jax.jit(dropout.threefry2x32)(key[0], key[1], x0, x1)
    ref = threefry_2x32(key, count)  # jax: first half of the counts is word 0, second word 1
    np.testing.assert_array_equal(np.concatenate([y0, y1]), np.asarray(ref))


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 9), (2, 4, 33, 64)])
def test_random_bits_equal_jax_random_bits(shape):
    for seed in (0, 12345):
        key = jax.random.key(seed)
        ours = jax.jit(dropout.random_bits, static_argnums=1)(key, shape)
        np.testing.assert_array_equal(np.asarray(ours),
                                      np.asarray(jax.random.bits(key, shape, jnp.uint32)))
    raw = jax.random.PRNGKey(3)  # legacy raw uint32[2] keys work too
    np.testing.assert_array_equal(np.asarray(dropout.random_bits(raw, (5, 6))),
                                  np.asarray(jax.random.bits(raw, (5, 6), jnp.uint32)))


def test_other_key_kinds_fall_back_to_jax():
    key = jax.random.key(1, impl="rbg")
    np.testing.assert_array_equal(np.asarray(dropout.random_bits(key, (4, 8))),
                                  np.asarray(jax.random.bits(key, (4, 8), jnp.uint32)))


def test_drop_rate_scale_and_determinism():
    x = jnp.full((64, 1024), 2.0, jnp.float32)
    key = jax.random.key(0)
    y = np.asarray(jax.jit(lambda x, k: dropout.drop(x, 0.1, k))(x, key))
    dropped = y == 0
    # 65536 Bernoulli(0.1) draws: the fraction is 0.1 +- 0.0012 (1 sigma)
    assert abs(dropped.mean() - 0.1) < 0.006
    np.testing.assert_allclose(y[~dropped], 2.0 / 0.9, rtol=1e-6)
    np.testing.assert_array_equal(y, np.asarray(dropout.drop(x, 0.1, key)))  # same key, same mask
    other = np.asarray(dropout.drop(x, 0.1, jax.random.key(1)))
    assert (dropped != (other == 0)).any()
    assert dropout.drop(x, 0.0, key) is x
    assert not np.asarray(dropout.drop(x, 1.0, key)).any()
    half = np.asarray(dropout.drop(x.astype(jnp.bfloat16), 0.5, key))
    assert half.dtype == jnp.bfloat16 and set(np.unique(half.astype(np.float32))) == {0.0, 4.0}


def test_module_is_identity_when_deterministic():
    x = jnp.arange(12.0).reshape(3, 4)
    m = dropout.Dropout(0.5)
    np.testing.assert_array_equal(m.apply({}, x, deterministic=True), x)
    y = m.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    assert (np.asarray(y) == 0).any()


def test_sharded_mask_equals_unsharded():
    from jax.sharding import NamedSharding, PartitionSpec as P
    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    shape = (8, 4, 16, 16)
    key = jax.random.key(7)
    whole = dropout.random_bits(key, shape)
    sharded = jax.jit(dropout.random_bits, static_argnums=1,
                      out_shardings=NamedSharding(mesh, P("data")))(key, shape)
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(whole))

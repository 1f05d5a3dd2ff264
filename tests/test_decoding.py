"""The decoding loop against numpy references, with a stub model (no T5 needed).

The stub is a Markov chain: the logits of the next token depend only on the current token
(`table[token]`), and the cache counts the steps actually run, so early exit is observable.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coderl_jax.inference import decoding
from coderl_jax.inference.decoding import SamplingConfig

V = 12
EOS, PAD, START = 2, 0, 0


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _stub(table):
    table = jnp.asarray(table, jnp.float32)

    def tokens_to_logits(token_ids, cache):  # [b] -> [b, V]
        return table[token_ids], cache + 1

    return tokens_to_logits


def _run(table, b, n, sampling, keys=None, **kw):
    fn = jax.jit(lambda keys, prefix, plen: decoding.decode(
        _stub(table), jnp.zeros((), jnp.int32), batch_size=b, max_new_tokens=n,
        sampling=sampling, row_keys=keys, start_id=START, eos_id=kw.get("eos_id", EOS),
        pad_id=PAD, prefix=prefix, prefix_len=plen))
    return jax.tree.map(np.asarray, fn(keys, kw.get("prefix"), kw.get("prefix_len")))


def _np_greedy(table, n, eos=EOS):
    """Reference greedy decode of the Markov stub: ids and model log-probs."""
    tok, ids, lps = START, [], []
    for _ in range(n):
        logits = table[tok]
        nxt = int(np.argmax(logits))
        ids.append(nxt)
        lps.append(_log_softmax(logits)[nxt])
        tok = nxt
        if eos is not None and nxt == eos:
            break
    return ids, lps


# ---- filters against numpy references -------------------------------------------------------

def _np_top_k_keep(row, k):
    kth = np.sort(row)[::-1][k - 1]
    return row >= kth


def _np_top_p_keep(row, p):
    """Nucleus by definition: descending order, keep while the mass strictly above is < p."""
    order = np.argsort(-row, kind="stable")
    probs = np.exp(_log_softmax(row.astype(np.float64)))[order]
    keep_sorted = (np.cumsum(probs) - probs) < p
    keep_sorted[0] = True
    threshold = row[order][keep_sorted].min()
    return row >= threshold


@pytest.fixture(scope="module")
def fixed_logits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 50)).astype(np.float32) * 3
    x[1, :5] = 4.0  # ties at the top
    x[2] = 0.0  # all equal
    x[3, 7] = 30.0  # one token holds nearly all the mass
    return x


@pytest.mark.parametrize("k", [1, 2, 5, 17, 49])
def test_top_k_keeps_exactly_the_k_largest(fixed_logits, k):
    out = np.asarray(decoding.top_k_filter(jnp.asarray(fixed_logits), k))
    for row, got in zip(fixed_logits, out):
        keep = _np_top_k_keep(row, k)
        np.testing.assert_array_equal(got > decoding.NEG_INF / 2, keep)
        np.testing.assert_array_equal(got[keep], row[keep])
    # rows without ties keep exactly k
    assert (out[0] > decoding.NEG_INF / 2).sum() == k


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99])
def test_top_p_keeps_exactly_the_nucleus(fixed_logits, p):
    out = np.asarray(decoding.top_p_filter(jnp.asarray(fixed_logits), p))
    for row, got in zip(fixed_logits, out):
        keep = _np_top_p_keep(row, p)
        np.testing.assert_array_equal(got > decoding.NEG_INF / 2, keep)
        np.testing.assert_array_equal(got[keep], row[keep])
        probs = np.exp(_log_softmax(row.astype(np.float64)))
        assert probs[keep].sum() >= p - 1e-6  # the nucleus holds at least p
    assert (out[3] > decoding.NEG_INF / 2).sum() == 1  # dominant token alone


def test_top_p_one_and_top_k_zero_are_no_ops(fixed_logits):
    x = jnp.asarray(fixed_logits)
    np.testing.assert_array_equal(np.asarray(decoding.top_p_filter(x, 1.0)), fixed_logits)
    np.testing.assert_array_equal(np.asarray(decoding.top_k_filter(x, 0)), fixed_logits)


def test_filter_order_is_temperature_then_top_k_then_top_p(fixed_logits):
    cfg = SamplingConfig(temperature=0.7, top_k=10, top_p=0.8)
    got = np.asarray(decoding.sampling_logits(jnp.asarray(fixed_logits), cfg))
    for row, g in zip(fixed_logits, got):
        x = row / np.float32(0.7)
        x = np.where(_np_top_k_keep(x, 10), x, decoding.NEG_INF)
        keep = _np_top_p_keep(x, 0.8)
        np.testing.assert_array_equal(g > decoding.NEG_INF / 2, keep)


@pytest.mark.parametrize("k", [1, 7, 50])
def test_top_k_then_top_p_over_a_large_vocabulary_matches_numpy(k):
    """The top-k candidates path (blocks of the vocabulary, then the nucleus inside the k largest)
    keeps exactly numpy's top-k-then-nucleus set: plain rows, ties at the top, ties at the k-th
    value spread over more blocks than k (the full-row count), +0.0 and -0.0 (one value), one
    dominant token; and equals the two filters applied one after the other."""
    rng = np.random.default_rng(k)
    v = 32100  # CodeT5's vocabulary
    x = rng.normal(size=(6, v)).astype(np.float32) * 3
    x[1, rng.integers(0, v, 30)] = x[1].max()
    x[2] = np.round(x[2])  # ties everywhere, the k-th value spread over many blocks
    x[3] = 0.0
    x[3, ::2] = -0.0
    x[4, 77] = 40.0
    x[5, ::7] = x[5].max()
    assert decoding._candidate_block(v, k) is not None
    for p in (0.05, 0.5, 0.95):
        got = np.asarray(decoding.top_k_top_p_filter(jnp.asarray(x), k, p))
        two = decoding.top_p_filter(decoding.top_k_filter(jnp.asarray(x), k), p)
        np.testing.assert_array_equal(got, np.asarray(two))
        for row, g in zip(x, got):
            top = np.where(_np_top_k_keep(row, k), row, decoding.NEG_INF)
            np.testing.assert_array_equal(g > decoding.NEG_INF / 2, _np_top_p_keep(top, p))
        assert np.all(got[3] == 0.0)  # +0.0 and -0.0 are one value: all tie, all kept


def test_order_key_preserves_float_order():
    x = np.array([-np.inf, -3e38, -2.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 2.5, 3e38, np.inf],
                 np.float32)
    keys = np.asarray(decoding._order_key(jnp.asarray(x)))
    assert np.all(np.diff(keys) >= 0) and np.all(np.diff(keys)[np.diff(x) > 0] > 0)


@pytest.mark.parametrize("block", [4, 7, 256, None])
def test_inverse_cdf_sampling_matches_numpy(block):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(64, 30)).astype(np.float32) * 2
    logits[::3, ::2] = decoding.NEG_INF  # filtered tokens
    u = rng.uniform(size=64).astype(np.float32)
    got, lse = decoding.sample_categorical(jnp.asarray(logits), jnp.asarray(u), block)
    probs = np.exp(_log_softmax(logits.astype(np.float64)))
    want = [int(np.searchsorted(np.cumsum(p), uu, side="right")) for p, uu in zip(probs, u)]
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_allclose(lse, np.asarray(jax.nn.logsumexp(logits, axis=-1)), rtol=1e-6)


def test_sampling_blocks_divide_the_vocabulary_when_they_can():
    assert decoding.sampling_block(32100) == 214  # CodeT5: 150 blocks, no padded copy
    assert decoding.sampling_block(32000) == 256
    assert decoding.sampling_block(131) == 131 and decoding.sampling_block(127) == 256
    assert decoding.sampling_block(1021) == 256  # prime: padded


def test_inverse_cdf_never_picks_a_filtered_token():
    logits = np.full((6, 20), decoding.NEG_INF, np.float32)
    logits[:, [3, 4, 11]] = [1.0, -2.0, 0.5]
    u = np.array([0.0, 1e-9, 0.5, 0.9999999, np.nextafter(1, 0, dtype=np.float32), 0.3],
                 np.float32)
    got = np.asarray(decoding.sample_categorical(jnp.asarray(logits), jnp.asarray(u), 4)[0])
    assert set(got.tolist()) <= {3, 4, 11}
    assert got[0] == 3 and got[4] == 11


def test_sampling_config_rejects_bad_values():
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-2)):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


# ---- the loop --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(V, V)).astype(np.float32) * 2
    return t


def test_greedy_matches_reference_with_eos_and_padding():
    # a chain 0 -> 5 -> 7 -> 2 (EOS): greedy stops after 3 tokens, pads the rest
    t = np.zeros((V, V), np.float32)
    t[0, 5] = t[5, 7] = t[7, EOS] = 5.0
    t[EOS, 9] = 5.0  # would continue after EOS if the loop did not stop the row
    res = _run(t, 3, 8, SamplingConfig(greedy=True))
    want, lps = _np_greedy(t, 8)
    assert want == [5, 7, EOS]
    for r in range(3):
        assert res.tokens[r].tolist() == [5, 7, EOS] + [PAD] * 5
        np.testing.assert_allclose(res.logprobs[r, :3], lps, rtol=1e-6)
        assert np.all(res.logprobs[r, 3:] == 0)
    assert res.lengths.tolist() == [3, 3, 3]


def test_greedy_random_chain_matches_numpy(table):
    res = _run(table, 2, 10, SamplingConfig(greedy=True))
    want, lps = _np_greedy(table, 10)
    got = np.asarray(res.tokens[0])[:int(res.lengths[0])].tolist()
    assert got == want
    np.testing.assert_allclose(res.logprobs[0, :len(want)], lps, rtol=1e-5, atol=1e-6)


def test_early_exit_runs_only_needed_steps():
    t = np.zeros((V, V), np.float32)
    t[:, EOS] = 10.0  # EOS right away
    res = _run(t, 4, 50, SamplingConfig(greedy=True))
    assert res.tokens[:, 0].tolist() == [EOS] * 4 and res.lengths.tolist() == [1] * 4
    assert int(res.steps) == 1
    # one row that never ends keeps the loop going to max_new_tokens
    t2 = t.copy()
    t2[[0, 5], :] = 0.0
    t2[0, 5] = 10.0
    t2[5, 5] = 10.0
    res = _run(t2, 2, 7, SamplingConfig(greedy=True), prefix=jnp.asarray([[0], [EOS]], jnp.int32),
               prefix_len=jnp.asarray([0, 1], jnp.int32))
    assert res.tokens.tolist() == [[5] * 7, [EOS] + [PAD] * 6]
    assert int(res.steps) == 7 and res.lengths.tolist() == [7, 1]


def test_no_eos_emits_exactly_max_new_tokens():
    t = np.zeros((V, V), np.float32)
    t[:, EOS] = 10.0
    res = _run(t, 2, 6, SamplingConfig(greedy=True), eos_id=None)
    assert res.tokens.tolist() == [[EOS] * 6] * 2
    assert res.lengths.tolist() == [6, 6]


def test_low_temperature_equals_greedy(table):
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    greedy = _run(table, 4, 10, SamplingConfig(greedy=True))
    cold = _run(table, 4, 10, SamplingConfig(temperature=1e-4), keys=keys)
    np.testing.assert_array_equal(cold.tokens, greedy.tokens)
    np.testing.assert_allclose(cold.logprobs, greedy.logprobs, rtol=1e-6)
    assert SamplingConfig(temperature=0.0).is_greedy


@pytest.mark.parametrize("temperature", [0.8, 1.0])  # 1.0: the normaliser comes from sampling
def test_samples_follow_the_model_distribution(temperature):
    # one step from a fixed distribution: empirical frequencies match softmax(logits / T)
    logits = np.array([0.0, 1.0, 2.0, -1.0, 0.5, 1.5], np.float32)
    t = np.tile(logits, (6, 1))
    n_rows = 4000
    keys = jax.random.split(jax.random.PRNGKey(0), n_rows)
    res = _run(t, n_rows, 1, SamplingConfig(temperature=temperature), keys=keys, eos_id=None)
    freq = np.bincount(res.tokens[:, 0], minlength=6) / n_rows
    want = np.exp(_log_softmax(logits / temperature))
    np.testing.assert_allclose(freq, want, atol=0.03)
    # model log-probs are at temperature 1; sampling log-probs at the sampling temperature
    np.testing.assert_allclose(res.logprobs[:, 0], _log_softmax(logits)[res.tokens[:, 0]],
                               rtol=1e-5)
    np.testing.assert_allclose(res.sample_logprobs[:, 0],
                               _log_softmax(logits / temperature)[res.tokens[:, 0]], rtol=1e-5)


def test_top_p_and_top_k_samples_stay_inside_the_kept_set():
    logits = np.array([3.0, 2.9, 1.0, 0.5, 0.0, -1.0, -2.0, 2.0], np.float32)
    t = np.tile(logits, (8, 1))
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    res = _run(t, 2000, 1, SamplingConfig(top_p=0.7), keys=keys, eos_id=None)
    nucleus = np.flatnonzero(_np_top_p_keep(logits, 0.7))
    assert set(res.tokens[:, 0].tolist()) == set(nucleus.tolist())
    res = _run(t, 2000, 1, SamplingConfig(top_k=3), keys=keys, eos_id=None)
    assert set(res.tokens[:, 0].tolist()) == {0, 1, 7}


def test_row_samples_do_not_depend_on_batch_position(table):
    keys = jax.random.split(jax.random.PRNGKey(7), 5)
    cfg = SamplingConfig(temperature=1.0)
    a = _run(table, 5, 12, cfg, keys=keys)
    perm = np.array([3, 0, 4, 1, 2])
    b = _run(table, 5, 12, cfg, keys=keys[perm])
    np.testing.assert_array_equal(a.tokens[perm], b.tokens)
    c = _run(table, 2, 12, cfg, keys=keys[1:3])
    np.testing.assert_array_equal(a.tokens[1:3], c.tokens)
    # different keys give different samples
    assert not np.array_equal(a.tokens[0], a.tokens[1])


def test_forced_prefix_is_teacher_forced_then_sampling_continues(table):
    b, n = 3, 10
    prefix = np.array([[4, 5, 6, 7], [8, 9, 0, 0], [0, 0, 0, 0]], np.int32)
    plen = np.array([4, 2, 0], np.int32)
    res = _run(table, b, n, SamplingConfig(greedy=True), prefix=jnp.asarray(prefix),
               prefix_len=jnp.asarray(plen))
    for r in range(b):
        assert res.tokens[r, :plen[r]].tolist() == prefix[r, :plen[r]].tolist()
        # after the prefix, greedy continues from the last forced token
        tok = prefix[r, plen[r] - 1] if plen[r] else START
        lps = [_log_softmax(table[START if i == 0 else prefix[r, i - 1]])[prefix[r, i]]
               for i in range(plen[r])]
        np.testing.assert_allclose(res.logprobs[r, :plen[r]], lps, rtol=1e-5)
        ref, _ = _np_greedy_from(table, tok, n - plen[r])
        got = np.asarray(res.tokens[r])[plen[r]:int(res.lengths[r])].tolist()
        assert got == ref


def test_forced_eos_in_prefix_ends_the_row(table):
    prefix = jnp.asarray([[4, EOS, 6]], jnp.int32)
    res = _run(table, 1, 6, SamplingConfig(greedy=True), prefix=prefix,
               prefix_len=jnp.asarray([3], jnp.int32))
    assert res.tokens[0].tolist() == [4, EOS, PAD, PAD, PAD, PAD]
    assert int(res.lengths[0]) == 2


def _np_greedy_from(table, tok, n, eos=EOS):
    ids = []
    for _ in range(n):
        nxt = int(np.argmax(table[tok]))
        ids.append(nxt)
        tok = nxt
        if nxt == eos:
            break
    return ids, None


def test_sampling_without_keys_is_an_error(table):
    with pytest.raises(ValueError):
        decoding.decode(_stub(table), jnp.zeros((), jnp.int32), batch_size=2, max_new_tokens=3,
                        sampling=SamplingConfig(temperature=1.0))


def _history_stub(table, widths):
    """A stub whose next logits depend on every token so far, kept in a cache of `slots` that
    the loop grows: a step past the cache would overwrite the last slot and change the chain.
    `widths` records the cache size each traced step sees."""
    table = jnp.asarray(table, jnp.float32)

    def tokens_to_logits(token_ids, cache):  # [b] -> [b, V]
        widths.append(cache["slots"].shape[1])
        slots = jax.lax.dynamic_update_slice(cache["slots"], token_ids[:, None],
                                             (0, cache["index"]))
        state = jnp.sum(slots * (1 + jnp.arange(slots.shape[1])), axis=1) % V  # [b]
        logits = table[state] + 5.0 * jax.nn.one_hot((7 * state + 3) % V, V)  # moves on
        return logits, {"index": cache["index"] + 1, "slots": slots}

    return tokens_to_logits


def _grow(cache, length):
    pad = length - cache["slots"].shape[1]
    return {**cache, "slots": jnp.pad(cache["slots"], ((0, 0), (0, pad)))}


@pytest.mark.parametrize("sampling", [SamplingConfig(greedy=True), SamplingConfig(temperature=1.0)])
def test_a_cache_grown_in_windows_decodes_like_one_full_cache(table, sampling):
    b, n = 3, 11
    keys = jax.random.split(jax.random.PRNGKey(5), b)
    outs = {}
    for windows in [(), (3, 4, 8, 11)]:
        widths = []
        cache = {"index": jnp.zeros((), jnp.int32),
                 "slots": jnp.zeros((b, windows[0] if windows else n), jnp.int32)}
        res = jax.jit(lambda keys, cache, w=windows, s=widths: decoding.decode(
            _history_stub(table, s), cache, batch_size=b, max_new_tokens=n, sampling=sampling,
            row_keys=keys, eos_id=None, windows=w, grow_cache=_grow))(keys, cache)
        outs[windows] = jax.tree.map(np.asarray, res)
        assert widths == list(windows or (n,))  # one traced step per window, at its size
    one, grown = outs[()], outs[(3, 4, 8, 11)]
    assert len(set(one.tokens[0].tolist())) > 3  # the chain moves
    np.testing.assert_array_equal(grown.tokens, one.tokens)
    np.testing.assert_array_equal(grown.logprobs, one.logprobs)
    assert int(grown.steps) == n


def test_cache_windows_choice_and_checks(table):
    assert decoding.cache_windows(12) == (12,)  # short decodes keep one loop
    assert decoding.cache_windows(128) == tuple(range(16, 129, 16))
    assert decoding.cache_windows(96) == (16, 32, 48, 64, 80, 96)
    w = decoding.cache_windows(600)
    assert len(w) == 8 and w[-1] == 600 and all(x % 8 == 0 for x in w[:-1])
    for bad in [(4, 3, 8), (3, 6), (8, 8), (0, 8)]:
        with pytest.raises(ValueError, match="cache windows"):
            decoding.decode(_stub(table), jnp.zeros((), jnp.int32), batch_size=2,
                            max_new_tokens=8, sampling=SamplingConfig(greedy=True),
                            windows=bad, grow_cache=_grow)
    with pytest.raises(ValueError, match="grow_cache"):
        decoding.decode(_stub(table), jnp.zeros((), jnp.int32), batch_size=2, max_new_tokens=8,
                        sampling=SamplingConfig(greedy=True), windows=(4, 8))

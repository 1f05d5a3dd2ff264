"""The sharded sampler on a tiny random T5: against uncached decoding and HF, across meshes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coderl_jax.config import MeshConfig, model_preset
from coderl_jax.data.prompts import truncate_prompt
from coderl_jax.inference import sampler as sampler_lib
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.inference.sampler import Sampler, SampleRequest
from coderl_jax.models import t5
from coderl_jax.partitioning import make_mesh

EOS = 2
MAX_NEW = 12


@pytest.fixture(scope="module")
def config():
    return model_preset("tiny", vocab_size=128, dropout_rate=0.0)


@pytest.fixture(scope="module")
def params(config):
    return t5.init_params(config, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def requests():
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        n = int(rng.integers(4, 40))
        ids = [1] + rng.integers(5, 128, size=n).tolist() + [EOS]
        out.append(SampleRequest(f"problem{i}", ids, tuple(range(3))))
    return out


def _by_pair(samples):
    return {(s.request_index, s.sample_index): (tuple(s.output_ids), s.logprobs) for s in samples}


def _mesh(n_devices, shape=(-1, 1, 1)):
    return make_mesh(MeshConfig(ici_parallelism=shape), devices=jax.devices()[:n_devices])


def _full_decode_logits(config, params, prompt, out_ids):
    """Uncached teacher-forced logits of `out_ids` after `prompt`: [len(out_ids), V].

    Decoder inputs are padded to MAX_NEW (causal attention: padding after position t does not
    change its logits), so one compile serves every length."""
    dec = np.zeros((1, MAX_NEW), np.int32)
    dec[0, : len(out_ids)] = out_ids
    enc = np.zeros((1, 64), np.int32)  # padded (masked) prompt: one compile for all prompts
    enc[0, : len(prompt)] = prompt
    mask = (np.arange(64) < len(prompt)).astype(np.int32)[None]
    logits = _teacher_forced(config, params, jnp.asarray(enc), jnp.asarray(mask),
                             jnp.asarray(dec))
    return np.asarray(logits[0, : len(out_ids)])


@jax.jit(static_argnums=0)
def _teacher_forced(config, params, enc_ids, mask, targets):
    model = t5.T5(config)
    encoded = model.apply({"params": params}, enc_ids, mask, method=t5.T5.encode)
    dec_in = t5.shift_right(targets, config.decoder_start_token_id)
    return model.apply({"params": params}, encoded, mask, dec_in, method=t5.T5.decode)


def _reference_greedy(config, params, prompt, n):
    ids = []
    for _ in range(n):
        logits = _full_decode_logits(config, params, prompt, ids + [0])
        nxt = int(np.argmax(logits[len(ids)]))
        ids.append(nxt)
        if nxt == EOS:
            break
    return ids


@pytest.mark.parametrize("windows", [None, (5, 12)])
def test_greedy_equals_uncached_argmax_decoding(config, params, requests, windows):
    s = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW,
                sampling=SamplingConfig(greedy=True), cache_windows=windows)
    reqs = [SampleRequest(r.key, r.prompt_ids, (0,)) for r in requests[:3]]
    got = {x.request_index: x for x in s.sample(reqs)}
    for i, r in enumerate(reqs):
        want = _reference_greedy(config, params, list(r.prompt_ids), MAX_NEW)
        assert got[i].output_ids == want


def test_greedy_equals_hf_generate(requests):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from coderl_jax import convert, hf_config

    hf_t5 = transformers.T5Config(
        vocab_size=128, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        d_kv=16, feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.0,
        decoder_start_token_id=0, eos_token_id=EOS, bos_token_id=1, pad_token_id=0,
        initializer_factor=5.0)  # HF's default init greedily repeats one token; this varies
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(hf_t5).eval()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = hf_config.model_config_from_hf(model.config.to_dict())
    params = convert.hf_state_to_params(state, config)

    prompts = [list(r.prompt_ids) for r in requests[:4]]  # different lengths: padded batch
    width = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                             max_new_tokens=MAX_NEW).numpy()
    want = []
    for row in out[:, 1:].tolist():  # drop the decoder start token
        want.append(row[: row.index(EOS) + 1] if EOS in row else row)

    assert len({tuple(w) for w in want}) == len(want) and len(set(want[0])) > 2
    for windows in [None, (4, 8, 12)]:  # one cache of MAX_NEW slots; one grown in windows
        s = Sampler(config, params, mesh=_mesh(8), batch_size=8, max_new_tokens=MAX_NEW,
                    sampling=SamplingConfig(greedy=True), cache_windows=windows)
        got = {x.request_index: x.output_ids for x in
               s.sample([SampleRequest(f"p{i}", p, (0,)) for i, p in enumerate(prompts)])}
        assert [got[i] for i in range(len(prompts))] == want, windows


def test_logprobs_are_model_logprobs_of_the_sampled_tokens(config, params, requests):
    s = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW,
                sampling=SamplingConfig(temperature=0.7, top_p=0.9))
    for x in list(s.sample(requests[:2], seed=3))[:4]:
        prompt = list(requests[x.request_index].prompt_ids)
        logits = _full_decode_logits(config, params, prompt, x.output_ids)
        logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
        want = np.asarray(logp)[np.arange(len(x.output_ids)), x.output_ids]
        np.testing.assert_allclose(x.logprobs, want, rtol=1e-4, atol=1e-5)
        assert x.logprob == pytest.approx(float(np.sum(want)), abs=1e-3)


def test_same_seed_same_samples_on_1_and_8_devices(config, params, requests):
    cfg = SamplingConfig(temperature=1.0)
    runs = {}
    # "1": one device, no mesh at all; "8": rows over 8 devices; "2x4": 2 row shards x 4 model
    for name, mesh, b in [("1", None, 8), ("8", _mesh(8), 8), ("2x4", _mesh(8, (2, 1, 4)), 4)]:
        s = Sampler(config, params, mesh=mesh, batch_size=b, max_new_tokens=MAX_NEW, sampling=cfg)
        runs[name] = _by_pair(s.sample(requests, seed=11))
    ids = {k: {p: v[0] for p, v in r.items()} for k, r in runs.items()}
    assert len(ids["1"]) == 15
    assert ids["1"] == ids["8"] == ids["2x4"]
    for k in ("8", "2x4"):
        for pair, (_, lp) in runs[k].items():
            np.testing.assert_allclose(lp, runs["1"][pair][1], rtol=1e-5, atol=1e-5)
    # a different seed changes the samples; different sample indices differ from each other
    s = Sampler(config, params, batch_size=8, max_new_tokens=MAX_NEW, sampling=cfg)
    other = {p: v[0] for p, v in _by_pair(s.sample(requests, seed=12)).items()}
    assert other != ids["1"]
    assert ids["1"][(0, 0)] != ids["1"][(0, 1)]


def test_samples_do_not_depend_on_batching_order_or_subset(config, params, requests):
    cfg = SamplingConfig(temperature=1.0)
    s = Sampler(config, params, batch_size=8, max_new_tokens=MAX_NEW, sampling=cfg)
    full = {(requests[i].key, j): v[0]
            for (i, j), v in _by_pair(s.sample(requests, seed=5)).items()}
    # reversed problems, only some sample indices (as --resume does), another batch size
    sub = [SampleRequest(r.key, r.prompt_ids, (2,) if k % 2 else (0, 2))
           for k, r in enumerate(reversed(requests))]
    s2 = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW, sampling=cfg)
    for x in s2.sample(sub, seed=5):
        assert tuple(x.output_ids) == full[(sub[x.request_index].key, x.sample_index)]


def test_encoder_runs_once_per_problem_group(config, params, requests, monkeypatch):
    s = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW,
                sampling=SamplingConfig(temperature=1.0))
    calls = {"encode": 0, "decode": 0}
    enc, dec = s.encode_group, s.decode_rows

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(s, "encode_group", count("encode", enc))
    monkeypatch.setattr(s, "decode_rows", count("decode", dec))
    reqs = [SampleRequest(r.key, r.prompt_ids, tuple(range(8))) for r in requests[:2]]
    out = list(s.sample(reqs, seed=0))
    assert len(out) == 16
    assert calls == {"encode": 2, "decode": 4}  # 8 samples = 2 chunks of 4 rows per problem
    # one sample each: all 5 problems share one group when the batch holds them
    calls.update(encode=0, decode=0)
    s.batch_size = 8
    out = list(s.sample([SampleRequest(r.key, r.prompt_ids, (0,)) for r in requests], seed=0))
    assert len(out) == 5 and calls == {"encode": 1, "decode": 1}


def test_forced_prefix_continues_from_the_seed(config, params, requests):
    s = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW,
                sampling=SamplingConfig(greedy=True))
    r = requests[1]
    prefix = [7, 9, 11]
    got = list(s.sample([SampleRequest(r.key, r.prompt_ids, (0,), prefix_ids=prefix)]))[0]
    assert got.output_ids[:3] == prefix
    # the continuation is the uncached argmax after the forced tokens
    ids = list(prefix)
    while len(ids) < MAX_NEW and ids[-1] != EOS:
        logits = _full_decode_logits(config, params, list(r.prompt_ids), ids + [0])
        ids.append(int(np.argmax(logits[len(ids)])))
    assert got.output_ids == ids


def test_eos_ends_rows_and_outputs_stop_there(config, params, requests):
    # bias the output layer towards EOS so some rows finish early
    p = jax.tree.map(lambda x: x, params)
    emb = np.asarray(p["token_embedder"]["embedding"]).copy()
    emb[EOS] *= 3.0
    p = {**p, "token_embedder": {**p["token_embedder"], "embedding": jnp.asarray(emb)}}
    s = Sampler(config, p, batch_size=8, max_new_tokens=MAX_NEW,
                sampling=SamplingConfig(temperature=1.0))
    outs = list(s.sample(requests, seed=2))
    lengths = [len(x.output_ids) for x in outs]
    assert any(x.output_ids and x.output_ids[-1] == EOS for x in outs)
    for x in outs:
        assert EOS not in x.output_ids[:-1]
        assert len(x.output_ids) == MAX_NEW or x.output_ids[-1] == EOS
        assert len(x.logprobs) == len(x.output_ids)
    assert min(lengths) < MAX_NEW


PINNED = {  # tokens the per-row layout produced before the shared one (params x 2, seed 11)
    "greedy": {
        (0, 0): [119, 115, 85, 23, 23, 23, 23, 23, 23, 23, 23, 23],
        (0, 1): [119, 115, 85, 23, 23, 23, 23, 23, 23, 23, 23, 23],
        (0, 2): [119, 115, 85, 23, 23, 23, 23, 23, 23, 23, 23, 23],
        (1, 0): [78, 51, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43],
        (1, 1): [78, 51, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43],
        (1, 2): [78, 51, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43],
    },
    "t1": {
        (0, 0): [119, 59, 51, 51, 51, 51, 51, 51, 78, 91, 23, 8],
        (0, 1): [36, 36, 87, 23, 23, 93, 62, 82, 8, 23, 23, 23],
        (0, 2): [55, 83, 119, 54, 115, 52, 55, 55, 55, 55, 67, 62],
        (1, 0): [78, 20, 78, 83, 31, 53, 55, 8, 102, 75, 32, 32],
        (1, 1): [78, 51, 43, 43, 43, 43, 43, 43, 8, 72, 3, 3],
        (1, 2): [78, 6, 55, 98, 83, 105, 23, 126, 126, 126, 90, 52],
    },
    "pk": {
        (0, 0): [119, 59, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51],
        (0, 1): [36, 36, 36, 36, 36, 36, 82, 8, 8, 8, 82, 8],
        (0, 2): [36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 82, 8],
        (1, 0): [78, 23, 83, 83, 83, 83, 83, 83, 83, 83, 83, 83],
        (1, 1): [78, 51, 43, 43, 43, 43, 43, 43, 8, 72, 3, 43],
        (1, 2): [78, 23, 83, 83, 83, 83, 83, 83, 83, 83, 83, 83],
    },
}

PIN_SAMPLING = {"greedy": SamplingConfig(greedy=True), "t1": SamplingConfig(temperature=1.0),
                "pk": SamplingConfig(temperature=0.8, top_p=0.95, top_k=50)}


@pytest.mark.parametrize("name", sorted(PIN_SAMPLING))
def test_shared_cross_attention_layout_keeps_the_samples(config, params, requests, name,
                                                         monkeypatch):
    """Rows of a problem reading one cross-attention K/V copy (the layout `sample` chooses: 4 rows
    per copy here; on 8 devices 4 or 2 rows per copy, pieces sharded with their rows), and a
    self-attention cache grown in windows, give the tokens the per-row layout gave before either
    existed (pinned) and that it gives now, on 1 and 8 devices."""
    sharper = jax.tree.map(lambda x: x * 2.0, params)  # greedy varies (the default init repeats)
    copies = []
    sampler_lib._decode_fn.cache_clear()  # trace afresh: the spy below sees every layout
    real_init_cache = t5.init_cache
    monkeypatch.setattr(t5, "init_cache", lambda c, p, enc, *a, **k: (
        copies.append((enc.shape[0], k.get("rows_per_problem", 1))),
        real_init_cache(c, p, enc, *a, **k))[1])
    runs = {}
    # "*_windows": the self-attention cache grown in windows of 4 slots (`cache_windows`)
    for layout, mesh, b, r, w in [("auto", None, 8, None, None), ("per_row", None, 8, 1, None),
                                  ("8dev", _mesh(8), 32, None, None),
                                  ("8dev_r2", _mesh(8), 16, 2, None),
                                  ("windows", None, 8, None, (4, 8, 12)),
                                  ("8dev_windows", _mesh(8), 32, None, (4, 8, 12))]:
        s = Sampler(config, sharper, mesh=mesh, batch_size=b, max_new_tokens=MAX_NEW,
                    sampling=PIN_SAMPLING[name], rows_per_problem=r, cache_windows=w)
        runs[layout] = _by_pair(s.sample(requests, seed=11))
    # traced once per layout: (K/V copies, rows per copy)
    assert copies == [(2, 4), (8, 1), (8, 4), (8, 2), (2, 4), (8, 4)]
    want = runs["per_row"]
    assert len(want) == 15
    for pair, out_ids in PINNED[name].items():
        assert list(want[pair][0]) == out_ids, pair
    for layout, got in runs.items():
        assert {p: v[0] for p, v in got.items()} == {p: v[0] for p, v in want.items()}, layout
        for pair, (_, lp) in got.items():
            # float32 sums in another order: the same tokens, log-probs within 1e-4
            np.testing.assert_allclose(lp, want[pair][1], rtol=1e-4, atol=1e-4)


def test_rows_per_problem_choice_and_checks(config, params):
    choose = sampler_lib.choose_rows_per_problem
    assert choose(64, [16] * 4) == 16  # CodeRL-like: one copy per problem
    assert choose(8, [200]) == 8 and choose(64, [1000]) == 64
    assert choose(8, [1] * 5) == 1  # one sample each: nothing to share
    assert choose(64, [200]) == 16  # 13 pieces of 16 (8 padded rows) beat 4 of 64 (56 padded)
    for b, counts in [(8, [3, 5]), (64, [7, 20, 1]), (6, [4])]:
        r = choose(b, counts)
        assert b % r == 0
    with pytest.raises(ValueError, match="must divide the rows each device decodes"):
        Sampler(config, params, batch_size=8, rows_per_problem=3)
    with pytest.raises(ValueError, match=r"decodes per call \(1\)"):
        Sampler(config, params, mesh=_mesh(8), batch_size=8, rows_per_problem=2)
    with pytest.raises(ValueError, match="cache windows"):
        Sampler(config, params, batch_size=8, max_new_tokens=MAX_NEW, cache_windows=(4, 8))
    s = Sampler(config, params, batch_size=4, max_new_tokens=128)
    assert s.cache_windows == tuple(range(16, 129, 16))  # the default: `decoding.cache_windows`
    s = Sampler(config, params, batch_size=4, max_new_tokens=MAX_NEW)
    with pytest.raises(ValueError, match="adjacent rows must share a slot"):
        s.decode_rows(None, None, np.array([0, 1, 1, 1]), np.zeros(4), np.zeros(4), 0, None,
                      rows_per_problem=2)


def test_helpers():
    assert sampler_lib.bucket(10, (64, 128, 256, 512), 600) == 64
    assert sampler_lib.bucket(300, (64, 128, 256, 512), 600) == 512
    assert sampler_lib.bucket(513, (64, 128, 256, 512), 600) == 600
    assert sampler_lib.bucket(100, (64, 128, 256, 512), 100) == 100
    assert truncate_prompt([1, 5, 6, 7, 2], 4, 2) == [1, 5, 6, 2]
    assert truncate_prompt([1, 5, 2], 4, 2) == [1, 5, 2]
    assert sampler_lib.row_key_hash("0001") == sampler_lib.row_key_hash("0001")
    for b, n in [(8, 1), (8, 5), (8, 20), (64, 1000), (8, 16), (4, 3)]:
        g = sampler_lib.group_size(b, n)
        assert 1 <= g <= b and (g * n) % b == 0


def test_sample_benchmark_reports_measured_rates():
    import argparse

    from coderl_jax.benchmarks import sample as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--size", "tiny", "--batch", "2", "--src-len", "8",
                              "--new-tokens", "4", "--repeats", "1"])
    out = bench.run(args)
    assert out["tokens_per_s"] > 0 and out["compile_s"] >= 0
    assert out["rows"] == 2 and out["rows_per_kv_copy"] == 1
    if "reference_tokens_per_s" in out:  # torch installed
        assert out["ratio"] == pytest.approx(out["tokens_per_s"] / out["reference_tokens_per_s"])
        assert out["backend"] == "cpu" and out["reference_device"] == "cpu"
    # CodeRL's workload: 2 problems x 4 samples (HF: num_return_sequences=4), filtering timed
    # too; on the tests' 8 devices each device decodes one row, so each row reads its own copy
    args = parser.parse_args(["--size", "tiny", "--problems", "2", "--samples-per-problem", "4",
                              "--src-len", "8", "--new-tokens", "4", "--repeats", "1",
                              "--top-p", "0.95", "--top-k", "50", "--no-reference"])
    out = bench.run(args)
    r = 4 if jax.device_count() == 1 else 1
    assert (out["rows"], out["rows_per_kv_copy"]) == (8, r)
    assert out["filtered_tokens_per_s"] > 0 and out["filtered_step_ratio"] > 0
    assert out["bytes_per_step"]["cross_attention_kv"] == 8 // r * 8 * 2 * 2 * 64 * 4
    assert out["peak_host_memory_mb"] > 0 and "bandwidth_fraction" not in out  # CPU


def test_bytes_per_step_counts_one_kv_copy_per_problem():
    from coderl_jax.benchmarks.sample import bytes_per_step
    from coderl_jax.config import model_preset

    small = model_preset("small")  # codet5-small, float32
    per_row = bytes_per_step(small, 64, 64, 256, (128,))
    shared = bytes_per_step(small, 64, 4, 256, (128,))
    assert per_row["weights"] == shared["weights"] == (6 * (8 * 512 * 512 + 2 * 512 * 2048)
                                                       + 32100 * 512) * 4  # ~166 MB
    assert per_row["cross_attention_kv"] == 64 * 256 * 6 * 2 * 512 * 4  # ~403 MB, > weights
    assert shared["cross_attention_kv"] * 16 == per_row["cross_attention_kv"]
    assert shared["self_attention_cache"] == 64 * 128 * 6 * 2 * 512 * 4
    # a cache grown in windows of 32: steps read 32, 64, 96, 128 slots, 32 steps each
    grown = bytes_per_step(small, 64, 4, 256, (32, 64, 96, 128))
    assert grown["self_attention_cache"] == 64 * 80 * 6 * 2 * 512 * 4


def test_top_k_draws_only_among_the_k_likeliest_tokens(config, params, requests):
    """On the tiny model, every sampled token (temperature 2: a flat distribution) ranks among
    the k highest logits of its step; without top-k the same draws leave that set."""
    k = 3

    def ranks(sampling):
        s = Sampler(config, params, batch_size=8, max_new_tokens=MAX_NEW, sampling=sampling)
        out = []
        for x in s.sample(requests, seed=5):
            prompt = list(requests[x.request_index].prompt_ids)
            logits = _full_decode_logits(config, params, prompt, x.output_ids)
            chosen = logits[np.arange(len(x.output_ids)), x.output_ids]
            out.extend((logits > chosen[:, None]).sum(axis=-1).tolist())  # 0 = the argmax
        return np.array(out)

    filtered = ranks(SamplingConfig(temperature=2.0, top_k=k))
    assert len(filtered) > 30 and filtered.max() < k and (filtered > 0).any()
    assert ranks(SamplingConfig(temperature=2.0)).max() >= k

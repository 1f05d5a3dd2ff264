"""The Flax T5 against HF transformers' PyTorch T5 (random weights), and against itself:
cached vs uncached decoding, scanned/rematerialised vs plain layers, sharded vs one device.

On a GPU (not yet run with `model.matmul_precision`, whose "auto" is "highest" there):
`JAX_PLATFORMS=cuda pytest tests/test_t5.py`; the sharded test needs 8 devices."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from coderl_jax import convert, hf_config  # noqa: E402
from coderl_jax.models import t5  # noqa: E402

TOL = 1e-5  # float32 Flax vs PyTorch, absolute, on logits
P32 = jax.lax.Precision.HIGHEST  # for the model's matmul helpers called directly
TINY = dict(vocab_size=512, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
            num_heads=4, d_kv=16)


def hf_model(seed=0, **shape):
    """A random-weight HF T5 v1.0 (layer norms perturbed so that every norm matters)."""
    config = transformers.T5Config(**{**TINY, **shape}, feed_forward_proj="relu",
                                   tie_word_embeddings=True, dropout_rate=0.1,
                                   decoder_start_token_id=0, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def to_flax(model):
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = hf_config.model_config_from_hf(model.config.to_dict())
    return config, convert.hf_state_to_params(state, config)


def make_batch(vocab, b=4, s=21, t=13, seed=0):
    """Right-padded token ids: encoder rows 1 and b-1 and decoder row 1 are padded."""
    rng = np.random.default_rng(seed)
    enc = rng.integers(3, vocab, (b, s)).astype(np.int32)
    enc_mask = np.ones((b, s), np.int32)
    enc_mask[1, s - 6:] = 0
    enc_mask[b - 1, 6:] = 0
    enc[enc_mask == 0] = 0
    dec = rng.integers(3, vocab, (b, t)).astype(np.int32)
    dec[:, 0] = 0  # decoder start
    dec_mask = np.ones((b, t), np.int32)
    dec_mask[1, t - 4:] = 0
    dec[dec_mask == 0] = 0
    return enc, enc_mask, dec, dec_mask


def hf_forward(model, enc, enc_mask, dec, dec_mask):
    """(logits, encoder output, decoder final hidden states) from PyTorch."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor(enc, dtype=torch.long),
                    attention_mask=torch.tensor(enc_mask),
                    decoder_input_ids=torch.tensor(dec, dtype=torch.long),
                    decoder_attention_mask=torch.tensor(dec_mask))
        hidden = model.decoder(input_ids=torch.tensor(dec, dtype=torch.long),
                               attention_mask=torch.tensor(dec_mask),
                               encoder_hidden_states=out.encoder_last_hidden_state,
                               encoder_attention_mask=torch.tensor(enc_mask)).last_hidden_state
    return out.logits.numpy(), out.encoder_last_hidden_state.numpy(), hidden.numpy()


@functools.lru_cache(maxsize=None)
def forward_fn(config):
    """jit: (params, enc, enc_mask, dec, dec_mask) -> (logits, encoded, decoder hidden)."""
    model = t5.T5(config)

    @jax.jit
    def forward(params, enc, enc_mask, dec, dec_mask):
        encoded = model.apply({"params": params}, enc, enc_mask, method=t5.T5.encode)
        logits, hidden = model.apply({"params": params}, encoded, enc_mask, dec, dec_mask,
                                     return_hidden=True, method=t5.T5.decode)
        return logits, encoded, hidden

    return forward


@pytest.fixture(scope="module")
def tiny():
    model = hf_model()
    config, params = to_flax(model)
    data = make_batch(config.vocab_size)
    return model, config, params, data, hf_forward(model, *data)


def test_relative_position_bucket_matches_hf():
    rel = np.arange(-300, 301)
    bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    for bidirectional in (True, False):
        for num_buckets, max_distance in ((32, 128), (16, 20)):
            want = bucket(torch.tensor(rel), bidirectional, num_buckets, max_distance).numpy()
            got = jax.jit(t5.relative_position_bucket, static_argnums=(1, 2, 3))(
                jnp.asarray(rel, jnp.int32), bidirectional, num_buckets, max_distance)
            np.testing.assert_array_equal(np.asarray(got), want)


def test_logits_match_hf_with_padding_masks(tiny):
    _, config, params, data, (ref_logits, ref_encoded, ref_hidden) = tiny
    logits, encoded, hidden = forward_fn(config)(params, *data)
    assert logits.dtype == jnp.float32 and logits.shape == ref_logits.shape
    np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=TOL, rtol=0)
    real = data[1].astype(bool)
    np.testing.assert_allclose(np.asarray(encoded)[real], ref_encoded[real], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(hidden), ref_hidden, atol=TOL, rtol=0)
    # __call__ is encode + decode
    call = jax.jit(lambda p, *a: t5.T5(config).apply({"params": p}, *a))(params, *data)
    np.testing.assert_allclose(np.asarray(call), ref_logits, atol=TOL, rtol=0)


def test_padding_is_ignored(tiny):
    """Changing padded encoder tokens changes nothing; real decoder positions ignore padding."""
    _, config, params, (enc, enc_mask, dec, dec_mask), _ = tiny
    logits = np.asarray(forward_fn(config)(params, enc, enc_mask, dec, dec_mask)[0])
    enc2 = np.where(enc_mask == 1, enc, 7).astype(np.int32)
    dec2 = np.where(dec_mask == 1, dec, 9).astype(np.int32)
    logits2 = np.asarray(forward_fn(config)(params, enc2, enc_mask, dec2, dec_mask)[0])
    real = dec_mask.astype(bool)
    np.testing.assert_allclose(logits2[real], logits[real], atol=TOL, rtol=0)
    assert np.abs(logits2 - logits).max() > 0  # the padded decoder positions did change


def test_logits_match_hf_at_codet5_small_widths():
    """CodeT5-small's widths (vocab 32100, d 512, ff 2048, 8 heads of 64), one layer each.
    (On CPU: logits up to 17.4, max difference 4.8e-6, i.e. TOL is about 5 float32 steps.)"""
    model = hf_model(seed=1, vocab_size=32100, d_model=512, d_ff=2048, num_layers=1,
                     num_decoder_layers=1, num_heads=8, d_kv=64)
    config, params = to_flax(model)
    data = make_batch(config.vocab_size, b=2, s=24, t=10, seed=1)
    ref_logits, _, _ = hf_forward(model, *data)
    logits = forward_fn(config)(params, *data)[0]
    np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=TOL, rtol=0)


@functools.lru_cache(maxsize=None)
def step_fn(config):
    return jax.jit(functools.partial(t5.decode_step, config))


def cached_logits(config, params, encoded, enc_mask, dec, max_len):
    """Feed `dec` one token at a time through decode_step: [b, t, vocab]."""
    cache = t5.init_cache(config, params, encoded, enc_mask, max_len)
    out = []
    for i in range(dec.shape[1]):
        logits, cache = step_fn(config)(params, cache, jnp.asarray(dec[:, i]), enc_mask)
        out.append(np.asarray(logits))
    assert int(cache["index"]) == dec.shape[1]
    return np.stack(out, axis=1)


def test_cached_decode_step_matches_decode(tiny):
    _, config, params, (enc, enc_mask, dec, _), _ = tiny
    no_padding = np.ones_like(dec)
    full, encoded, _ = forward_fn(config)(params, enc, enc_mask, dec, no_padding)
    stepped = cached_logits(config, params, encoded, enc_mask, dec, max_len=dec.shape[1] + 3)
    assert stepped.dtype == np.float32
    np.testing.assert_allclose(stepped, np.asarray(full), atol=TOL, rtol=0)
    # shift_right(y) is what the decoder reads when teacher-forcing y
    y = np.array([[5, 6, 7, 2]], np.int32)
    np.testing.assert_array_equal(np.asarray(t5.shift_right(y, 0)), [[0, 5, 6, 7]])


def test_shared_cross_attention_cache_matches_per_row_decoding(tiny):
    """The shared layout: 4 problems x 3 rows each, one cross-attention K/V copy per problem,
    give every row the logits of a plain per-row cache fed the same tokens (looped and scanned
    layers)."""
    _, config, params, (enc, enc_mask, dec, _), _ = tiny
    r = 3
    encoded = forward_fn(config)(params, enc, enc_mask, dec, np.ones_like(dec))[1]
    rows_dec = np.random.default_rng(4).integers(3, config.vocab_size,
                                                 (enc.shape[0] * r, 6)).astype(np.int32)
    rows_dec[:, 0] = 0
    rep_enc, rep_mask = np.repeat(np.asarray(encoded), r, 0), np.repeat(enc_mask, r, 0)
    for cfg, p in ((config, params),
                   (dataclasses.replace(config, scan_layers=True), t5.stack_layers(params))):
        want = cached_logits(cfg, p, rep_enc, rep_mask, rows_dec, max_len=8)
        cache = t5.init_cache(cfg, p, encoded, enc_mask, 8, rows_per_problem=r)
        assert jax.tree.leaves(cache["cross_k"])[0].shape[-4] == enc.shape[0]  # one per problem
        assert jax.tree.leaves(cache["self_k"])[0].shape[-4] == enc.shape[0] * r
        got = []
        for i in range(rows_dec.shape[1]):
            logits, cache = step_fn(cfg)(p, cache, jnp.asarray(rows_dec[:, i]), enc_mask)
            got.append(np.asarray(logits))
        np.testing.assert_allclose(np.stack(got, axis=1), want, atol=TOL, rtol=0)
        assert np.abs(np.diff(want, axis=0)).max() > 1e-2  # rows differ: the test can fail


def test_layer_layouts_roundtrip(tiny):
    _, _, params, _, _ = tiny
    stacked = t5.stack_layers(params)
    assert stacked["encoder"]["layers"]["mlp"]["wi"]["kernel"].shape == (2, 64, 128)
    assert "layers_0" not in stacked["decoder"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, t5.unstack_layers(stacked), params)


def test_scan_and_remat_forward_match_hf(tiny):
    _, config, params, data, (ref_logits, _, _) = tiny
    for flags in (dict(scan_layers=True), dict(remat=True)):
        cfg = dataclasses.replace(config, **flags)
        logits = forward_fn(cfg)(t5.params_for_layout(params, cfg), *data)[0]
        np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=TOL, rtol=0, err_msg=flags)


def test_scanned_cached_decoding(tiny):
    _, config, params, (enc, enc_mask, dec, _), _ = tiny
    cfg = dataclasses.replace(config, scan_layers=True)
    stacked = t5.stack_layers(params)
    full, encoded, _ = forward_fn(cfg)(stacked, enc, enc_mask, dec, np.ones_like(dec))
    stepped = cached_logits(cfg, stacked, encoded, enc_mask, dec, max_len=dec.shape[1])
    np.testing.assert_allclose(stepped, np.asarray(full), atol=TOL, rtol=0)


@pytest.mark.slow
def test_scan_remat_gradients_match_plain(tiny):
    _, config, params, (enc, enc_mask, dec, dec_mask), _ = tiny

    def loss_and_grad(cfg):
        def loss(p):
            logits = t5.T5(cfg).apply({"params": p}, enc, enc_mask, dec, dec_mask)
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(dec)[..., None], -1))
        return jax.jit(jax.value_and_grad(loss))

    scan_cfg = dataclasses.replace(config, scan_layers=True, remat=True)
    loss_plain, g_plain = loss_and_grad(config)(params)
    loss_scan, g_scan = loss_and_grad(scan_cfg)(t5.stack_layers(params))
    np.testing.assert_allclose(float(loss_scan), float(loss_plain), atol=TOL, rtol=0)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=TOL, rtol=1e-4),
        g_plain, t5.unstack_layers(g_scan))


def test_dropout_only_when_not_deterministic(tiny):
    _, config, params, data, (ref_logits, _, _) = tiny
    model = t5.T5(config)

    @jax.jit
    def run(rng):
        return model.apply({"params": params}, *data, deterministic=False, rngs={"dropout": rng})

    # 'rbg' keys: threefry dropout masks take XLA:CPU several times longer to compile
    a, b, a2 = (run(jax.random.key(seed, impl="rbg")) for seed in (0, 1, 0))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    assert np.abs(np.asarray(a) - ref_logits).max() > 1e-3


def test_init_params_and_logical_axes(tiny):
    from coderl_jax import partitioning

    _, config, converted, _, _ = tiny
    for cfg in (config, dataclasses.replace(config, scan_layers=True)):
        params = jax.eval_shape(functools.partial(t5.init_params, cfg), jax.random.key(0))
        want = t5.params_for_layout(converted, cfg)
        assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(want)
        jax.tree_util.tree_map(lambda a, b: assert_shape_dtype(a, b.shape, np.float32),
                               params, want)
        axes = t5.param_logical_axes(cfg)
        partitioning.check_logical_axes(params, axes)  # every parameter named, ranks match
        leaves = jax.tree_util.tree_leaves(axes, is_leaf=lambda x: isinstance(x, jax.P))
        names = {n for spec in leaves for n in spec}
        assert names <= {"vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets",
                         "layers"}
        assert ("layers" in names) == cfg.scan_layers
    # HF's initialisation scales: the query is 1/sqrt(d_kv) narrower than the key
    small = dataclasses.replace(config, num_encoder_layers=1, num_decoder_layers=1)
    params = t5.init_params(small, jax.random.key(0))
    attn = params["encoder"]["layers_0"]["attention"]
    ratio = np.std(attn["key"]["kernel"]) / np.std(attn["query"]["kernel"])
    assert abs(ratio - np.sqrt(config.d_kv)) < 0.5


def assert_shape_dtype(a, shape, dtype):
    assert a.shape == shape and a.dtype == dtype, (a.shape, a.dtype, shape)


def test_sharded_forward_matches_single_device(tiny):
    import flax.linen as nn
    from jax.sharding import AxisType

    from coderl_jax import partitioning

    _, config, params, data, (ref_logits, _, _) = tiny
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)
    shardings = partitioning.logical_to_mesh_sharding(t5.param_logical_axes(config), mesh)
    rows = jax.sharding.NamedSharding(mesh, jax.P(("data", "fsdp")))
    with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.DEFAULT_RULES):
        sharded = jax.device_put(params, shardings)
        inputs = [jax.device_put(x, rows) for x in data]
        logits = jax.jit(lambda p, *a: t5.T5(config).apply({"params": p}, *a))(sharded, *inputs)
    emb = sharded["token_embedder"]["embedding"]
    assert len(emb.sharding.device_set) == 8 and not emb.sharding.is_fully_replicated
    np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=TOL, rtol=0)


def test_bfloat16_compute_keeps_float32_params_and_logits(tiny):
    _, config, params, data, (ref_logits, _, _) = tiny
    cfg = dataclasses.replace(config, dtype="bfloat16")
    init = jax.eval_shape(functools.partial(t5.init_params, cfg), jax.random.key(0))
    assert {a.dtype for a in jax.tree_util.tree_leaves(init)} == {np.dtype(np.float32)}
    logits, encoded, _ = forward_fn(cfg)(params, *data)
    assert logits.dtype == jnp.float32 and encoded.dtype == jnp.bfloat16
    # bfloat16 keeps ~3 significant digits: a sanity bound, not a reference tolerance
    assert np.abs(np.asarray(logits) - ref_logits).max() < 0.05 * np.abs(ref_logits).max()


def test_untied_lm_head(tiny):
    """An untied head holding E^T gives the tied logits without the d_model^-0.5 rescale."""
    _, config, params, data, (ref_logits, _, _) = tiny
    cfg = dataclasses.replace(config, tie_word_embeddings=False)
    untied = {**params, "logits_dense": {"kernel": params["token_embedder"]["embedding"].T}}
    assert jax.tree_util.tree_structure(untied) == jax.tree_util.tree_structure(
        jax.eval_shape(functools.partial(t5.init_params, cfg), jax.random.key(0)))
    logits = forward_fn(cfg)(untied, *data)[0]
    scale = np.sqrt(config.d_model)
    np.testing.assert_allclose(np.asarray(logits), ref_logits * scale, atol=TOL * scale, rtol=0)


def _all_eqns(jaxpr):
    """Every equation of a jaxpr and of the jaxprs nested in its equations' parameters."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _all_eqns(getattr(inner, "jaxpr", inner))


@pytest.mark.parametrize("spec,a_shape,b_shape", [
    ("aby,yz->abz", (2, 3, 8), (8, 5)),  # nn.Dense
    ("bld,vd->blv", (2, 3, 8), (11, 8)),  # the tied LM head
])
def test_weight_matmul_gradients(spec, a_shape, b_shape):
    """`_matmul32`'s hand-written backward equals autodiff of the plain einsum (float32), and a
    bfloat16 model's backward matmuls take bfloat16 operands only (accumulating in float32)."""
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in (a_shape, b_shape))
    w = jnp.asarray(rng.normal(size=jnp.einsum(spec, a, b).shape), jnp.float32)
    ours = jax.grad(lambda a, b: jnp.sum(w * t5._matmul32(spec, P32, a, b)), (0, 1))(a, b)
    ref = jax.grad(lambda a, b: jnp.sum(w * jnp.einsum(spec, a, b, precision=P32)), (0, 1))(a, b)
    for x, y in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)

    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    jaxpr = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(w * t5._matmul32(spec, P32, a, b)),
                                    (0, 1)))(a16, b16)
    dots = [e for e in _all_eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    assert len(dots) == 3  # forward, d/da, d/db
    for e in dots:
        assert [v.aval.dtype for v in e.invars] == [jnp.bfloat16] * 2, e
        assert e.outvars[0].aval.dtype == jnp.float32


@pytest.mark.parametrize("on_cpu", [True, False])
@pytest.mark.parametrize("bias_rows", [1, 3])
def test_shared_bias_gradient(bias_rows, on_cpu, monkeypatch):
    """Both forms of the bias's batch-sum (the CPU contraction, the plain sum elsewhere)."""
    monkeypatch.setattr(t5, "_on_cpu", lambda: on_cpu)
    rng = np.random.default_rng(1)
    scores = jnp.asarray(rng.normal(size=(3, 2, 4, 5)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(bias_rows, 2, 4, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=scores.shape), jnp.float32)
    add = functools.partial(t5._add_bias, P32)
    ours = jax.grad(lambda s, b: jnp.sum(w * jnp.tanh(add(s, b))), (0, 1))(scores, bias)
    ref = jax.grad(lambda s, b: jnp.sum(w * jnp.tanh(s + b)), (0, 1))(scores, bias)
    for x, y in zip(ours, ref):
        assert x.shape == y.shape
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def test_bfloat16_gradients_at_256_tokens():
    """A bfloat16 training gradient compiles and runs on XLA CPU at 256+256 tokens (some bf16 x
    bf16 -> f32 attention-backward layouts have no CPU kernel there) and tracks float32's."""
    config = dataclasses.replace(
        hf_config.model_config_from_hf(hf_model(d_model=64, d_ff=128, num_heads=8,
                                              d_kv=64).config.to_dict()))
    params = t5.init_params(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    enc = jnp.asarray(rng.integers(3, config.vocab_size, (2, 256)), jnp.int32)
    dec = jnp.asarray(rng.integers(3, config.vocab_size, (2, 256)), jnp.int32)

    def grads(cfg):
        def loss(p):
            logits = t5.T5(cfg).apply({"params": p}, enc, None, dec, None, deterministic=False,
                                      rngs={"dropout": jax.random.key(1)})
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), dec[..., None], -1))
        return jax.jit(jax.grad(loss))(params)

    g32 = grads(config)
    g16 = grads(dataclasses.replace(config, dtype="bfloat16"))
    for x, y in zip(jax.tree_util.tree_leaves(g16), jax.tree_util.tree_leaves(g32)):
        assert x.dtype == jnp.float32 and np.isfinite(np.asarray(x)).all()
        # bfloat16 keeps ~3 significant digits: a sanity bound, not a reference tolerance
        assert np.abs(np.asarray(x) - np.asarray(y)).max() <= 0.1 * np.abs(np.asarray(y)).max()


def test_matmul_weights_cast_once_give_the_same_outputs(tiny):
    """The sampler hoists the bfloat16 casts of matmul weights out of its decode loop; the model
    casts them on use anyway, so every output is bit-identical and norms stay float32."""
    _, config, params, data, _ = tiny
    cfg = dataclasses.replace(config, dtype="bfloat16")
    cast = t5.matmul_weights_in_compute_dtype(cfg, params)
    flat = dict(jax.tree_util.tree_leaves_with_path(cast))
    dtypes = {jax.tree_util.keystr(k): v.dtype for k, v in flat.items()}
    assert all(d == jnp.bfloat16 for k, d in dtypes.items()
               if k.endswith(("['kernel']", "['embedding']")))
    assert all(d == jnp.float32 for k, d in dtypes.items() if "scale" in k or "rel_embedding" in k)
    for a, b in zip(forward_fn(cfg)(params, *data), forward_fn(cfg)(cast, *data)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert t5.matmul_weights_in_compute_dtype(config, params)["token_embedder"]["embedding"] \
        .dtype == jnp.float32

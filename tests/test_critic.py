"""CodeRL's critic: head placement and pooling checked against a by-hand PyTorch computation on
HF's decoder states, export with CodeRL's `error_head.*` keys, and the binary variant."""
import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402

from coderl_jax import checkpoint_io, cli, convert, hf_config  # noqa: E402
from coderl_jax.config import CriticConfig  # noqa: E402
from coderl_jax.models import critic as critic_lib  # noqa: E402

TOL = 1e-5
HF_CONFIG = dict(vocab_size=256, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                 num_heads=4, d_kv=16, feed_forward_proj="relu", tie_word_embeddings=True,
                 decoder_start_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**HF_CONFIG)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    config = hf_config.model_config_from_hf(model.config.to_dict())
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return model, config, convert.hf_state_to_params(state, config)


def make_critic(backbone, num_classes, seed=0):
    _, config, t5_params = backbone
    critic_config = CriticConfig(num_classes=num_classes)
    params = critic_lib.critic_params_from_actor(t5_params, config, critic_config,
                                                 jax.random.key(seed))
    return config, critic_config, params


def critic_inputs(vocab):
    """Programs right-padded with 0 (decoder inputs = shift_right(targets) as in CodeRL)."""
    rng = np.random.default_rng(1)
    enc = rng.integers(3, vocab, (3, 12)).astype(np.int32)
    enc_mask = np.ones_like(enc)
    enc_mask[2, 8:] = 0
    targets = rng.integers(3, vocab, (3, 9)).astype(np.int32)
    dec_mask = np.ones_like(targets)
    dec_mask[0, 5:] = 0
    dec_mask[1, 8:] = 0
    targets[dec_mask == 0] = 0
    dec = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
    return enc, enc_mask, dec, dec_mask


@functools.lru_cache(maxsize=None)
def critic_fn(config, critic_config, pool_padding):
    model = critic_lib.T5Critic(config, critic_config)
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, pool_padding=pool_padding))


def torch_critic(hf_model, head_state, enc, enc_mask, dec, dec_mask):
    """CodeRL's forward by hand: error_head(decoder states * d^-0.5), max over positions."""
    d = hf_model.config.d_model
    hidden_size, classes = head_state["error_head.0.weight"].shape[0], \
        head_state["error_head.2.weight"].shape[0]
    head = torch.nn.Sequential(torch.nn.Linear(d, hidden_size), torch.nn.ReLU(),
                               torch.nn.Linear(hidden_size, classes))
    head.load_state_dict({k.removeprefix("error_head."): torch.tensor(v)
                          for k, v in head_state.items()})
    with torch.no_grad():
        encoded = hf_model.encoder(input_ids=torch.tensor(enc, dtype=torch.long),
                                   attention_mask=torch.tensor(enc_mask)).last_hidden_state
        states = hf_model.decoder(input_ids=torch.tensor(dec, dtype=torch.long),
                                  encoder_hidden_states=encoded,
                                  encoder_attention_mask=torch.tensor(enc_mask)).last_hidden_state
        token_logits = head(states * d ** -0.5)  # [b, t, C]
        pooled_all = token_logits.max(dim=1).values  # CodeRL: padding included
        real = torch.tensor(dec_mask, dtype=torch.bool)[:, :, None]
        pooled_real = token_logits.masked_fill(~real, float("-inf")).max(dim=1).values
    return token_logits.numpy(), pooled_all.numpy(), pooled_real.numpy()


def test_critic_matches_coderl_computed_in_torch(backbone):
    hf_model, _, _ = backbone
    config, critic_config, params = make_critic(backbone, 4)
    data = critic_inputs(config.vocab_size)
    state = convert.params_to_hf_state(params, config, critic_config)
    head_state = {k: v for k, v in state.items() if k.startswith("error_head.")}
    assert head_state["error_head.0.weight"].shape == (128, 64)
    assert head_state["error_head.2.weight"].shape == (4, 128)
    ref_tokens, ref_all, ref_real = torch_critic(hf_model, head_state, *data)

    cls_real, tokens = critic_fn(config, critic_config, False)(params, *data)
    cls_all, tokens2 = critic_fn(config, critic_config, True)(params, *data)
    assert cls_real.shape == (3, 4) and tokens.shape == (3, 9, 4) and tokens.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(tokens), ref_tokens, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(tokens2), ref_tokens, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(cls_all), ref_all, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(cls_real), ref_real, atol=TOL, rtol=0)
    assert np.abs(ref_all - ref_real).max() > 0  # the two poolings differ on these inputs


def test_critic_export_has_coderl_keys_and_roundtrips(backbone, tmp_path):
    hf_model, _, _ = backbone
    config, critic_config, params = make_critic(backbone, 4, seed=3)
    ckpt, exported, back = tmp_path / "critic", tmp_path / "hf", tmp_path / "back"
    checkpoint_io.save_model(ckpt, params, config, critic_config)
    assert cli.main(["convert", "to-hf", "--checkpoint", str(ckpt), "--out", str(exported)]) == 0
    state = load_file(str(exported / "model.safetensors"))
    assert set(convert.ERROR_HEAD_KEYS) <= set(state)
    assert json.loads((exported / "config.json").read_text())["coderl_critic"] == {
        "num_classes": 4, "hidden": 128}

    # transformers loads the backbone (ignoring error_head); the head computed by hand on its
    # decoder states gives our critic's logits
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(exported).eval()
    data = critic_inputs(config.vocab_size)
    head_state = {k: state[k] for k in convert.ERROR_HEAD_KEYS}
    ref_tokens, _, ref_real = torch_critic(reloaded, head_state, *data)
    cls, tokens = critic_fn(config, critic_config, False)(params, *data)
    np.testing.assert_allclose(np.asarray(tokens), ref_tokens, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(cls), ref_real, atol=TOL, rtol=0)

    assert cli.main(["convert", "from-hf", "--hf-dir", str(exported), "--out", str(back),
                     "--critic"]) == 0
    loaded, loaded_config, loaded_critic = checkpoint_io.load_model(back)
    assert loaded_config == config and loaded_critic == critic_config
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                           loaded, params)
    # a critic folder read as a plain T5 is refused, not silently stripped
    assert cli.main(["convert", "from-hf", "--hf-dir", str(exported),
                     "--out", str(tmp_path / "x")]) == 2


def test_binary_critic_and_logical_axes(backbone):
    from coderl_jax import partitioning

    config, critic_config, params = make_critic(backbone, 2)
    data = critic_inputs(config.vocab_size)
    cls, tokens = critic_fn(config, critic_config, False)(params, *data)
    assert cls.shape == (3, 2) and tokens.shape == (3, 9, 2)
    fresh = jax.eval_shape(functools.partial(critic_lib.init_critic_params, config, critic_config),
                           jax.random.key(0))
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(params)
    head = critic_lib.init_head_params(config, critic_config, jax.random.key(0))
    assert head["out"]["kernel"].shape == (128, 2) and head["out"]["bias"].shape == (2,)
    bound = 128 ** -0.5  # torch.nn.Linear's default init range
    assert 0.5 * bound < np.abs(head["out"]["kernel"]).max() <= bound
    axes = critic_lib.critic_logical_axes(config, critic_config)
    partitioning.check_logical_axes(fresh, axes)
    scanned = dataclasses.replace(config, scan_layers=True)
    partitioning.check_logical_axes(
        jax.eval_shape(functools.partial(critic_lib.init_critic_params, scanned, critic_config),
                       jax.random.key(0)),
        critic_lib.critic_logical_axes(scanned, critic_config))

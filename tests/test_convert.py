"""HF/PyTorch <-> orbax conversion: bit-exact round trips, exports transformers loads with the
same logits, and one-line errors for bad input."""
import json
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file, save_file  # noqa: E402

from coderl_jax import checkpoint_io, cli, convert, hf_config  # noqa: E402
from coderl_jax.errors import UserError  # noqa: E402
from coderl_jax.models import t5  # noqa: E402

TOL = 1e-5
HF_CONFIG = dict(vocab_size=256, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                 num_heads=4, d_kv=16, feed_forward_proj="relu", tie_word_embeddings=True,
                 decoder_start_token_id=0, bos_token_id=1, eos_token_id=2)


def tree_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                           a, b)


def inputs(vocab):
    rng = np.random.default_rng(0)
    enc = rng.integers(3, vocab, (2, 11)).astype(np.int32)
    mask = np.ones_like(enc)
    mask[1, 7:] = 0
    dec = rng.integers(3, vocab, (2, 6)).astype(np.int32)
    dec[:, 0] = 0
    return enc, mask, dec


def hf_logits(model, enc, mask, dec):
    with torch.no_grad():
        return model(input_ids=torch.tensor(enc, dtype=torch.long),
                     attention_mask=torch.tensor(mask),
                     decoder_input_ids=torch.tensor(dec, dtype=torch.long)).logits.numpy()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A saved random-weight HF T5 (model.safetensors + config.json), and the model itself."""
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**HF_CONFIG)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("hf") / "t5"
    model.save_pretrained(d)
    return d, model


@pytest.fixture(scope="module")
def converted(hf_dir, tmp_path_factory):
    """`coderl convert from-hf` output and the parameters it should hold."""
    d, _ = hf_dir
    out = tmp_path_factory.mktemp("ckpt") / "model"
    assert cli.main(["convert", "from-hf", "--hf-dir", str(d), "--out", str(out)]) == 0
    config = hf_config.model_config_from_hf(json.loads((d / "config.json").read_text()))
    return out, config, convert.hf_state_to_params(load_file(str(d / "model.safetensors")), config)


def test_from_hf_checkpoint_loads_bit_equal(converted):
    out, config, want = converted
    assert checkpoint_io.is_model_dir(out)
    params, model_config, critic = checkpoint_io.load_model(out)
    assert model_config == config and critic is None
    assert config.d_model == 64 and config.num_decoder_layers == 2 and config.tie_word_embeddings
    tree_equal(params, want)
    assert params["token_embedder"]["embedding"].dtype == np.float32
    assert not list(out.parent.glob(".*"))  # no temp folders left beside it


def test_to_hf_reloads_in_transformers_with_same_logits(converted, hf_dir, tmp_path):
    ckpt, config, params = converted
    _, original = hf_dir
    out = tmp_path / "exported"
    assert cli.main(["convert", "to-hf", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    state = load_file(str(out / "model.safetensors"))
    assert "shared.weight" in state and "lm_head.weight" not in state  # tied: written once
    assert all(v.dtype == np.float32 for v in state.values())
    assert json.loads((out / "config.json").read_text())["model_type"] == "t5"

    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
    enc, mask, dec = inputs(config.vocab_size)
    ours = jax.jit(lambda p, *a: t5.T5(config).apply({"params": p}, *a))(params, enc, mask, dec)
    np.testing.assert_allclose(hf_logits(reloaded, enc, mask, dec), np.asarray(ours),
                               atol=TOL, rtol=0)
    np.testing.assert_array_equal(hf_logits(reloaded, enc, mask, dec),
                                  hf_logits(original, enc, mask, dec))


def test_state_dict_roundtrip_bit_equal(hf_dir, converted):
    d, model = hf_dir
    _, config, params = converted
    state = convert.params_to_hf_state(params, config)
    original = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}
    assert set(state) == set(original) - tied
    for k in state:
        np.testing.assert_array_equal(state[k], original[k], err_msg=k)
    tree_equal(convert.hf_state_to_params(state, config), params)


def test_scan_layout_roundtrip(hf_dir, converted, tmp_path):
    d, _ = hf_dir
    _, config, params = converted
    out = tmp_path / "scanned"
    assert cli.main(["convert", "from-hf", "--hf-dir", str(d), "--out", str(out),
                     "--scan-layers"]) == 0
    scanned, scan_config, _ = checkpoint_io.load_model(out)
    assert scan_config.scan_layers and "layers" in scanned["encoder"]
    tree_equal(t5.unstack_layers(scanned), params)
    exported = tmp_path / "hf"
    convert.to_hf(out, exported)
    state = load_file(str(exported / "model.safetensors"))
    for k, v in convert.params_to_hf_state(params, config).items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_pytorch_bin_is_read(hf_dir, converted, tmp_path):
    d, model = hf_dir
    _, config, params = converted
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(d / "config.json", bin_dir / "config.json")
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    hf_config, state = convert.read_hf_dir(bin_dir)
    tree_equal(convert.hf_state_to_params(state, config), params)


def test_save_model_replaces_atomically_and_refuses_foreign_folders(converted, tmp_path):
    _, config, params = converted
    path = tmp_path / "m"
    checkpoint_io.save_model(path, params, config)
    doubled = jax.tree_util.tree_map(lambda a: np.asarray(a) * 2, params)
    checkpoint_io.save_model(path, doubled, config)
    tree_equal(checkpoint_io.load_model(path)[0], doubled)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a model checkpoint"):
        checkpoint_io.save_model(foreign, params, config)
    assert (foreign / "todo.txt").read_text() == "keep me"


def _broken(kind, hf_dir, tmp_path):
    """An input folder that is wrong in one way; returns the CLI arguments that read it."""
    d, _ = hf_dir
    bad = tmp_path / kind
    if kind in ("non_t5", "shape", "missing_key", "no_config"):
        shutil.copytree(d, bad)
    if kind == "missing_folder":
        return ["convert", "from-hf", "--hf-dir", str(bad), "--out", str(tmp_path / "o")]
    if kind == "non_t5":
        cfg = json.loads((bad / "config.json").read_text())
        cfg["model_type"] = "bert"
        (bad / "config.json").write_text(json.dumps(cfg))
    elif kind == "shape":
        cfg = json.loads((bad / "config.json").read_text())
        cfg["d_ff"] = 96
        (bad / "config.json").write_text(json.dumps(cfg))
    elif kind == "missing_key":
        state = load_file(str(bad / "model.safetensors"))
        del state["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
        save_file(state, str(bad / "model.safetensors"))
    elif kind == "no_config":
        (bad / "config.json").unlink()
    elif kind == "not_critic":
        return ["convert", "from-hf", "--hf-dir", str(d), "--out", str(tmp_path / "o"),
                "--critic"]
    elif kind in ("ckpt_missing", "ckpt_empty", "ckpt_foreign"):
        if kind != "ckpt_missing":
            bad.mkdir()
        if kind == "ckpt_foreign":
            (bad / "readme.txt").write_text("hello")
        return ["convert", "to-hf", "--checkpoint", str(bad), "--out", str(tmp_path / "o")]
    return ["convert", "from-hf", "--hf-dir", str(bad), "--out", str(tmp_path / "o")]


@pytest.mark.parametrize("kind, message", [
    ("missing_folder", "HF model folder not found"),
    ("non_t5", "not a T5 config: model_type is 'bert'"),
    ("shape", "shape mismatch for encoder.block.0.layer.1.DenseReluDense.wi.weight"),
    ("missing_key", "lacks decoder.block.1.layer.2.DenseReluDense.wo.weight"),
    ("no_config", "has no config.json"),
    ("not_critic", "not a CodeRL critic"),
    ("ckpt_missing", "checkpoint not found"),
    ("ckpt_empty", "checkpoint folder is empty"),
    ("ckpt_foreign", "is not a model checkpoint"),
])
def test_cli_errors_are_one_line(kind, message, hf_dir, tmp_path, capsys):
    argv = _broken(kind, hf_dir, tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coderl: error: "), captured.err
    assert message in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", "to-hf", "--help"])
    assert e.value.code == 0 and "--checkpoint" in capsys.readouterr().out


def test_load_model_onto_a_mesh(converted):
    from jax.sharding import AxisType

    from coderl_jax import partitioning

    out, config, want = converted
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)
    shardings = partitioning.logical_to_mesh_sharding(t5.param_logical_axes(config), mesh)
    params, _, _ = checkpoint_io.load_model(out, shardings=shardings)
    emb = params["token_embedder"]["embedding"]
    assert emb.sharding == shardings["token_embedder"]["embedding"]
    assert not emb.sharding.is_fully_replicated
    tree_equal(params, want)

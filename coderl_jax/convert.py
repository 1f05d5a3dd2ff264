"""HF/PyTorch T5 (CodeT5, CodeRL critic) <-> Flax parameters and model checkpoints.

Reading accepts `model.safetensors` (also sharded, with `model.safetensors.index.json`) or
`pytorch_model.bin` (needs torch). Writing produces `config.json` + `model.safetensors` with
`safetensors.numpy`, so exporting needs no torch. Tied embeddings are written once, as
`shared.weight` (HF ties `encoder/decoder.embed_tokens` and `lm_head` to it when loading).
A critic's head is written as CodeRL names it: `error_head.0.*` (Linear d->hidden) and
`error_head.2.*` (Linear hidden->classes).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from etils import epath

from coderl_jax import paths
from coderl_jax.checkpoint_io import copy_tokenizer, load_model, save_model, tokenizer_path
from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.errors import UserError
from coderl_jax.hf_config import hf_config_from_model_config, model_config_from_hf
from coderl_jax.models.t5 import params_for_layout, unstack_layers
from coderl_jax.paths import PathLike

PyTree = Any

# Keys some T5 checkpoints carry that hold nothing we need (HF ignores them too).
_IGNORED_KEYS = {
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
}
ERROR_HEAD_KEYS = ("error_head.0.weight", "error_head.0.bias", "error_head.2.weight",
                   "error_head.2.bias")


# ----------------------------------------------------------------------------- key mapping

# (HF key, path in the unscanned Flax tree, True if the HF matrix is the transposed kernel)
Mapping = list[tuple[str, tuple[str, ...], bool]]


def _attention(hf: str, flax: tuple[str, ...]) -> Mapping:
    return [(f"{hf}.{a}.weight", flax + (b, "kernel"), True)
            for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))]


def key_mapping(config: ModelConfig, critic: CriticConfig | None = None) -> Mapping:
    """Every HF tensor of the model and where it lives in our (unscanned) parameter tree."""
    m: Mapping = [("shared.weight", ("token_embedder", "embedding"), False)]
    for stack, n in (("encoder", config.num_encoder_layers),
                     ("decoder", config.num_decoder_layers)):
        m.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                  (stack, "relpos_bias", "rel_embedding"), False))
        for i in range(n):
            hf, fl = f"{stack}.block.{i}.layer", (stack, f"layers_{i}")
            if stack == "encoder":
                m += _attention(f"{hf}.0.SelfAttention", fl + ("attention",))
                m.append((f"{hf}.0.layer_norm.weight", fl + ("pre_attention_layer_norm", "scale"),
                          False))
                ff = 1
            else:
                m += _attention(f"{hf}.0.SelfAttention", fl + ("self_attention",))
                m.append((f"{hf}.0.layer_norm.weight",
                          fl + ("pre_self_attention_layer_norm", "scale"), False))
                m += _attention(f"{hf}.1.EncDecAttention", fl + ("encoder_decoder_attention",))
                m.append((f"{hf}.1.layer_norm.weight",
                          fl + ("pre_cross_attention_layer_norm", "scale"), False))
                ff = 2
            m.append((f"{hf}.{ff}.DenseReluDense.wi.weight", fl + ("mlp", "wi", "kernel"), True))
            m.append((f"{hf}.{ff}.DenseReluDense.wo.weight", fl + ("mlp", "wo", "kernel"), True))
            m.append((f"{hf}.{ff}.layer_norm.weight", fl + ("pre_mlp_layer_norm", "scale"), False))
        m.append((f"{stack}.final_layer_norm.weight", (stack, f"{stack}_norm", "scale"), False))
    if not config.tie_word_embeddings:
        m.append(("lm_head.weight", ("logits_dense", "kernel"), True))
    if critic is not None:
        m = [(k, ("t5",) + path, t) for k, path, t in m]
        m += [("error_head.0.weight", ("error_head", "hidden", "kernel"), True),
              ("error_head.0.bias", ("error_head", "hidden", "bias"), False),
              ("error_head.2.weight", ("error_head", "out", "kernel"), True),
              ("error_head.2.bias", ("error_head", "out", "bias"), False)]
    return m


def _expected_shape(path: tuple[str, ...], config: ModelConfig,
                    critic: CriticConfig | None) -> tuple[int, ...]:
    """The Flax shape of the parameter at `path` (unscanned layout)."""
    c = config
    inner = c.num_heads * c.d_kv
    leaf = path[-2:]
    table: dict[tuple[str, str], tuple[int, ...]] = {
        ("token_embedder", "embedding"): (c.vocab_size, c.d_model),
        ("relpos_bias", "rel_embedding"): (c.relative_attention_num_buckets, c.num_heads),
        ("query", "kernel"): (c.d_model, inner), ("key", "kernel"): (c.d_model, inner),
        ("value", "kernel"): (c.d_model, inner), ("out", "kernel"): (inner, c.d_model),
        ("wi", "kernel"): (c.d_model, c.d_ff), ("wo", "kernel"): (c.d_ff, c.d_model),
        ("logits_dense", "kernel"): (c.d_model, c.vocab_size),
    }
    if path[0] == "error_head":
        h = critic.hidden
        return {("hidden", "kernel"): (c.d_model, h), ("hidden", "bias"): (h,),
                ("out", "kernel"): (h, critic.num_classes),
                ("out", "bias"): (critic.num_classes,)}[leaf]
    if leaf[1] == "scale":
        return (c.d_model,)
    return table[leaf]


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _get(tree: PyTree, path: tuple[str, ...]):
    for p in path:
        tree = tree[p]
    return tree


def hf_state_to_params(state: dict[str, np.ndarray], config: ModelConfig,
                       critic: CriticConfig | None = None) -> PyTree:
    """HF state dict (numpy, float32) -> our parameter tree in the layout `config` asks for."""
    state = dict(state)
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    if (not config.tie_word_embeddings and "lm_head.weight" not in state
            and "shared.weight" in state):
        state["lm_head.weight"] = state["shared.weight"]  # saved tied (transformers >= 5)
    mapping = key_mapping(config, critic)
    missing = [k for k, _, _ in mapping if k not in state]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise UserError(f"checkpoint lacks {', '.join(missing[:3])}{more}")
    used = {k for k, _, _ in mapping} | _IGNORED_KEYS
    if config.tie_word_embeddings:
        used.add("lm_head.weight")  # a copy of shared.weight in tied checkpoints
    unexpected = sorted(set(state) - used)
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raise UserError(f"checkpoint has keys a T5 of this config does not: "
                        f"{', '.join(unexpected[:3])}{more}")
    params: dict = {}
    dtype = np.dtype(config.param_dtype)
    for key, path, transpose in mapping:
        array = np.asarray(state[key])
        array = array.T if transpose else array
        want = _expected_shape(path[1:] if critic is not None and path[0] == "t5" else path,
                               config, critic)
        if array.shape != want:
            got = tuple(np.asarray(state[key]).shape)
            need = tuple(reversed(want)) if transpose else want
            raise UserError(f"shape mismatch for {key}: checkpoint has {got}, config needs {need}")
        _set(params, path, np.ascontiguousarray(array.astype(dtype)))
    if critic is not None:
        params["t5"] = params_for_layout(params["t5"], config)
        return params
    return params_for_layout(params, config)


def params_to_hf_state(params: PyTree, config: ModelConfig,
                       critic: CriticConfig | None = None) -> dict[str, np.ndarray]:
    """Our parameter tree (either layout) -> HF state dict of float32 numpy arrays."""
    if critic is not None:
        params = {**params, "t5": unstack_layers(params["t5"])}
    else:
        params = unstack_layers(params)
    state = {}
    for key, path, transpose in key_mapping(config, critic):
        try:
            array = np.asarray(_get(params, path), dtype=np.float32)
        except (KeyError, TypeError) as e:
            raise UserError(f"checkpoint parameters lack {'/'.join(path)}") from e
        state[key] = np.ascontiguousarray(array.T if transpose else array)
    return state


# ----------------------------------------------------------------------------- HF folders


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON ({e.msg})") from e
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object")
    return value


def read_hf_dir(hf_dir: PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(config.json dict, state dict of numpy arrays) of an HF model folder (local or gs://)."""
    d = paths.as_path(hf_dir)
    if not d.is_dir():
        paths.check_bucket(d)
        raise UserError(f"HF model folder not found: {d}")
    if paths.is_remote(d):
        with paths.local_copy(d) as local:
            return read_hf_dir(local)
    if not (d / "config.json").is_file():
        raise UserError(f"{d} has no config.json (not an HF model folder)")
    hf_config = _read_json(d / "config.json")
    model_config_from_hf(hf_config)  # validate before reading weights
    if (d / "model.safetensors").is_file():
        files = [d / "model.safetensors"]
    elif (d / "model.safetensors.index.json").is_file():
        index = _read_json(d / "model.safetensors.index.json")
        files = [d / name for name in sorted(set(index.get("weight_map", {}).values()))]
    elif (d / "pytorch_model.bin").is_file():
        return hf_config, _read_torch_bin(d / "pytorch_model.bin")
    else:
        raise UserError(f"{d} has no model.safetensors or pytorch_model.bin")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    state: dict[str, np.ndarray] = {}
    for f in files:
        if not f.is_file():
            raise UserError(f"weights file missing: {f}")
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise UserError(f"cannot read {f}: {e}") from e
    return hf_config, state


def _read_torch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise UserError(f"reading {path.name} needs torch (pip install torch), "
                        "or convert it to model.safetensors first") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign pickle is user input
        raise UserError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()
            if hasattr(v, "detach")}


def _atomic_dir(out: epath.Path, fill: Callable[[Path], None]) -> None:
    """Build a folder in a temp sibling with `fill`, then move it to `out` (replacing `out`);
    for a bucket `out` the folder is built locally and uploaded."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if paths.is_remote(out):
        paths.check_bucket(out)
        parent = None
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        parent = out.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        fill(tmp)
        paths.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_hf_dir(out: PathLike, params: PyTree, config: ModelConfig,
                 critic: CriticConfig | None = None, tokenizer: PathLike | None = None
                 ) -> epath.Path:
    """Write `config.json` + `model.safetensors` (atomically, as one folder) for `params`;
    with `tokenizer` (a folder of vocab.json + merges.txt) also its files and a
    `tokenizer_config.json` naming RobertaTokenizer, CodeT5's class, for AutoTokenizer."""
    from safetensors.numpy import save_file

    out = paths.absolute(out)
    state = params_to_hf_state(params, config, critic)
    hf_config = hf_config_from_model_config(config, critic)

    def fill(tmp: Path) -> None:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2)
            f.write("\n")
        if tokenizer is not None:
            copy_tokenizer(tokenizer, tmp)
            with open(tmp / "tokenizer_config.json", "w", encoding="utf-8") as f:
                json.dump({"tokenizer_class": "RobertaTokenizer"}, f)
                f.write("\n")

    _atomic_dir(out, fill)
    return out


# ----------------------------------------------------------------------------- commands


def _noop(stage: str) -> None:
    pass


def from_hf(hf_dir: str | Path, out: str | Path, critic: bool = False, *,
            scan_layers: bool = False, progress: Callable[[str], None] = _noop
            ) -> tuple[ModelConfig, CriticConfig | None]:
    """Convert an HF T5/CodeT5 folder (a CodeRL critic with `critic=True`) to a model checkpoint.

    `progress(stage)` is called as each of the three stages (read, convert, save) ends.
    """
    hf_config, state = read_hf_dir(hf_dir)
    progress("read")
    config = model_config_from_hf(hf_config, scan_layers=scan_layers)
    critic_config = None
    if critic:
        missing = [k for k in ERROR_HEAD_KEYS if k not in state]
        if missing:
            raise UserError(f"not a CodeRL critic: {Path(hf_dir)} lacks {', '.join(missing)}")
        hidden, d = state["error_head.0.weight"].shape
        classes = state["error_head.2.weight"].shape[0]
        critic_config = CriticConfig(num_classes=int(classes), hidden=int(hidden))
    else:
        head = [k for k in state if k.startswith("error_head.")]
        if head:
            raise UserError(f"{Path(hf_dir)} holds a critic head ({head[0]}, ...): "
                            "pass --critic to convert it as a critic")
    params = hf_state_to_params(state, config, critic_config)
    del state
    progress("convert")
    save_model(out, params, config, critic_config)
    progress("save")
    return config, critic_config


def to_hf(checkpoint: str | Path, out: str | Path, *, progress: Callable[[str], None] = _noop
          ) -> tuple[ModelConfig, CriticConfig | None]:
    """Export a model checkpoint to an HF folder `transformers` can load (with the tokenizer
    the checkpoint carries, if any).

    `progress(stage)` is called as each of the two stages (load, write) ends.
    """
    params, config, critic_config = load_model(checkpoint)
    progress("load")
    write_hf_dir(out, params, config, critic_config, tokenizer=tokenizer_path(checkpoint))
    progress("write")
    return config, critic_config

"""The model checkpoint every command reads and writes.

A model checkpoint is a folder:
  model_config.json   {"model": {ModelConfig fields}, "critic": {CriticConfig fields} | null,
                       "format": "coderl-jax-model", "version": 1}
  params/             an orbax (StandardCheckpointer) checkpoint of the parameter tree
  tokenizer/          optional: the tokenizer the model was trained with (vocab.json,
                      merges.txt, added_tokens.json), when it is not the packaged CodeT5 one;
                      commands use it when no --tokenizer is given (`tokenizer_path`)
The folder is built beside its destination and renamed into place (on a bucket: its config is
written last), so an interrupted save never leaves a half-written checkpoint under the
requested name. Paths may be local or gs:// (`coderl_jax.paths`).

`load_model` also reads a training workdir (its latest checkpoint, or its final model/).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
from etils import epath

from coderl_jax import partitioning, paths
from coderl_jax.config import CriticConfig, ModelConfig, from_config_dict
from coderl_jax.errors import UserError
from coderl_jax.files import write_json
from coderl_jax.models import t5
from coderl_jax.models.critic import init_critic_params
from coderl_jax.paths import PathLike
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.train import checkpoints

PyTree = Any
CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer.json")
FORMAT = "coderl-jax-model"
Loaded = tuple[PyTree, ModelConfig, "CriticConfig | None"]


def is_model_dir(path: PathLike) -> bool:
    p = paths.as_path(path)
    return (p / CONFIG_FILE).is_file() and (p / PARAMS_DIR).is_dir()


def _config_json(model_config: ModelConfig, critic_config: CriticConfig | None) -> dict:
    return {"format": FORMAT, "version": 1, "model": dataclasses.asdict(model_config),
            "critic": dataclasses.asdict(critic_config) if critic_config is not None else None}


def read_model_config(path: PathLike) -> tuple[ModelConfig, CriticConfig | None]:
    """The (ModelConfig, CriticConfig | None) a model checkpoint folder records."""
    p = paths.as_path(path) / CONFIG_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise UserError(f"{path} is not a model checkpoint (no {CONFIG_FILE})") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: invalid JSON ({e.msg})") from e
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise UserError(f"{p}: not a coderl-jax model config (no 'model' section)")
    model = from_config_dict(ModelConfig, data["model"])
    critic = from_config_dict(CriticConfig, data["critic"]) if data.get("critic") else None
    return model, critic


def save_model(path: PathLike, params: PyTree, model_config: ModelConfig,
               critic_config: CriticConfig | None = None, tokenizer: PathLike | None = None
               ) -> epath.Path:
    """Save params + config as a model checkpoint folder at `path`, replacing one already there;
    `tokenizer` (a tokenizer folder) is copied into it as `tokenizer/`.

    Locally the folder is built beside `path` and renamed into place. A bucket has no rename:
    there the old config goes first, the params are written in place and the config last, so
    a folder with a config is always complete. Every process of a multi-host job calls this;
    process 0 writes the config (and renames).
    """
    import orbax.checkpoint as ocp

    path = paths.absolute(path)
    remote = paths.is_remote(path)
    paths.check_bucket(path)
    if path.exists() and not (path.is_dir() and {p.name for p in path.iterdir()} <= {
            CONFIG_FILE, PARAMS_DIR, TOKENIZER_DIR}):  # empty, a model, or an interrupted save
        raise UserError(f"{path} exists and is not a model checkpoint; refusing to replace it")
    tmp = path if remote else path.parent / f".{path.name}.saving"
    lead = jax.process_index() == 0
    if lead:
        if remote:
            (path / CONFIG_FILE).unlink(missing_ok=True)  # incomplete from here on
            paths.rmtree(path / PARAMS_DIR)
            paths.rmtree(path / TOKENIZER_DIR)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            paths.rmtree(tmp)  # a stale one from an interrupted save
            tmp.mkdir()
    _sync("coderl_save_model_start")
    try:
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(tmp / PARAMS_DIR, params)
        ckptr.wait_until_finished()
        ckptr.close()
        if lead:
            if tokenizer:
                copy_tokenizer(tokenizer, tmp / TOKENIZER_DIR)
            write_json(tmp / CONFIG_FILE, _config_json(model_config, critic_config))
            if not remote:
                paths.replace_dir(tmp, path)
    except BaseException:
        if lead and not remote:
            paths.rmtree(tmp)
        raise
    _sync("coderl_save_model_end")
    return path


def copy_tokenizer(source: PathLike, out: PathLike) -> None:
    """Copy a tokenizer folder's files (those of TOKENIZER_FILES it has) into folder `out`."""
    src, dst = paths.as_path(source), paths.as_path(out)
    files = [src / name for name in TOKENIZER_FILES if (src / name).is_file()]
    if not files:
        raise UserError(f"{src} holds no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        (dst / f.name).write_bytes(f.read_bytes())


def tokenizer_path(checkpoint: PathLike | None) -> epath.Path | None:
    """The tokenizer a model checkpoint carries (its `tokenizer/` folder), else None."""
    if not checkpoint:
        return None
    folder = paths.as_path(checkpoint) / TOKENIZER_DIR
    if not folder.is_dir():
        folder = paths.as_path(checkpoint) / "model" / TOKENIZER_DIR  # a training workdir
    return folder if folder.is_dir() else None


def model_tokenizer(explicit: PathLike | None, checkpoint: PathLike | None):
    """The tokenizer a command uses: `explicit` when given, else the one `checkpoint` carries,
    else $CODERL_TOKENIZER or the packaged CodeT5 tokenizer."""
    return load_tokenizer(explicit or tokenizer_path(checkpoint))


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def abstract_params(model_config: ModelConfig, critic_config: CriticConfig | None = None,
                    shardings: PyTree = None) -> PyTree:
    """ShapeDtypeStructs of the parameter tree, carrying `shardings` (default: one device)."""
    if critic_config is not None:
        shapes = jax.eval_shape(lambda: init_critic_params(model_config, critic_config,
                                                           jax.random.key(0)))
    else:
        shapes = jax.eval_shape(lambda: t5.init_params(model_config, jax.random.key(0)))
    if shardings is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
    return jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def load_model(path: PathLike, shardings: PyTree = None) -> Loaded:
    """(params, model_config, critic_config | None) from a model checkpoint folder.

    `shardings`: a tree of jax.sharding.Sharding matching the params (e.g. from
    partitioning.logical_to_mesh_sharding); by default params land on the first local device.
    """
    p = paths.require_exists(path, "checkpoint")
    if not p.is_dir():
        raise UserError(f"checkpoint is not a folder: {p}")
    if not is_model_dir(p):
        result = load_workdir_model(p, shardings)
        if result is not None:
            return result
        if not any(p.iterdir()):
            raise UserError(f"checkpoint folder is empty: {p}")
        raise UserError(f"{p} is not a model checkpoint (expected {CONFIG_FILE} and {PARAMS_DIR}/; "
                        "make one with `coderl convert from-hf` or `coderl train`)")
    model_config, critic_config = read_model_config(p)
    import orbax.checkpoint as ocp

    target = abstract_params(model_config, critic_config, shardings)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore(paths.absolute(p) / PARAMS_DIR, target)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot restore {p / PARAMS_DIR} for the model in {CONFIG_FILE}: "
                        f"{first}") from e
    return params, model_config, critic_config


def load_workdir_model(path: PathLike, shardings: Any = None) -> Loaded | None:
    """(params, ModelConfig, CriticConfig | None) of a training workdir (or its checkpoints/
    folder): its latest checkpoint, else its final model/; None if `path` is neither."""
    directory = checkpoints.find_checkpoints(path)
    if directory is None:
        final = paths.as_path(path) / "model"
        return load_model(final, shardings) if is_model_dir(final) else None
    with checkpoints.Checkpointer(None, read_only=True, directory=directory) as ckpt:
        meta = ckpt.meta()
    if "model" not in meta:
        raise UserError(f"{directory}: checkpoint has no model config in its meta")
    model_cfg = from_config_dict(ModelConfig, meta["model"])
    critic_cfg = from_config_dict(CriticConfig, meta["critic"]) if meta.get("critic") else None
    target = abstract_params(model_cfg, critic_cfg, shardings)
    params, _ = checkpoints.load_params(directory, target=target)
    return params, model_cfg, critic_cfg


def load_actor(path: PathLike, mesh=None) -> tuple[ModelConfig, PyTree]:
    """(ModelConfig, params) of an actor checkpoint, placed with the training rules on `mesh`."""
    shardings = None
    if mesh is not None and is_model_dir(path):
        config, critic = read_model_config(path)
        if critic is None:
            shardings = partitioning.logical_to_mesh_sharding(t5.param_logical_axes(config), mesh)
    params, config, critic = load_model(path, shardings)
    if critic is not None:
        raise UserError(f"{path} is a critic checkpoint; generate needs an actor (plain T5)")
    return config, params

"""The model checkpoint every command reads and writes.

A model checkpoint is a folder:
  model_config.json   {"model": {ModelConfig fields}, "critic": {CriticConfig fields} | null,
                       "format": "coderl-jax-model", "version": 1}
  params/             an orbax (StandardCheckpointer) checkpoint of the parameter tree
The folder is built beside its destination and renamed into place (on a bucket: its config is
written last), so an interrupted save never leaves a half-written checkpoint under the
requested name. Paths may be local or gs:// (`coderl_jax.paths`).

`load_model` also accepts other folders that hold a model (a training workdir) through readers
registered with `register_loader` or named in `LOADER_MODULES`.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, Callable

import jax
from etils import epath

from coderl_jax import paths
from coderl_jax.config import CriticConfig, ModelConfig, from_config_dict
from coderl_jax.errors import UserError
from coderl_jax.paths import PathLike

PyTree = Any
CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
FORMAT = "coderl-jax-model"
Loaded = tuple[PyTree, ModelConfig, "CriticConfig | None"]

# Readers of other folder kinds holding a model, tried in order when `path` is not a model
# checkpoint: fn(path: Path, shardings) -> (params, model_config, critic_config) or None when
# `path` is not its kind. "module:function" strings are imported on first use, so the training
# code can add its workdir reader here without this module importing it.
LOADER_MODULES: list[str] = ["coderl_jax.train.checkpoints:load_workdir_model"]
_LOADERS: list[Callable[[epath.Path, Any], "Loaded | None"]] = []


def register_loader(fn: Callable[[epath.Path, Any], "Loaded | None"]) -> None:
    """Let `load_model` read another folder kind (e.g. a training workdir's latest model)."""
    if fn not in _LOADERS:
        _LOADERS.append(fn)


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
               critic_config: CriticConfig | None = None) -> epath.Path:
    """Save params + config as a model checkpoint folder at `path`, replacing one already there.

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
            CONFIG_FILE, PARAMS_DIR}):  # empty, a model, or one whose save was interrupted
        raise UserError(f"{path} exists and is not a model checkpoint; refusing to replace it")
    tmp = path if remote else path.parent / f".{path.name}.saving"
    lead = jax.process_index() == 0
    if lead:
        if remote:
            (path / CONFIG_FILE).unlink(missing_ok=True)  # incomplete from here on
            paths.rmtree(path / PARAMS_DIR)
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
            from coderl_jax.files import write_json

            write_json(tmp / CONFIG_FILE, _config_json(model_config, critic_config))
            if not remote:
                paths.replace_dir(tmp, path)
    except BaseException:
        if lead and not remote:
            paths.rmtree(tmp)
        raise
    _sync("coderl_save_model_end")
    return path


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def abstract_params(model_config: ModelConfig, critic_config: CriticConfig | None = None,
                    shardings: PyTree = None) -> PyTree:
    """ShapeDtypeStructs of the parameter tree, carrying `shardings` (default: one device)."""
    if critic_config is not None:
        from coderl_jax.models.critic import init_critic_params

        shapes = jax.eval_shape(lambda: init_critic_params(model_config, critic_config,
                                                           jax.random.key(0)))
    else:
        from coderl_jax.models.t5 import init_params

        shapes = jax.eval_shape(lambda: init_params(model_config, jax.random.key(0)))
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
        for loaded in _other_loaders():
            result = loaded(p, shardings)
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


def _other_loaders():
    for spec in LOADER_MODULES:
        module, _, fn = spec.partition(":")
        register_loader(getattr(importlib.import_module(module), fn))
    LOADER_MODULES.clear()
    return list(_LOADERS)

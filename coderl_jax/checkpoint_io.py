"""The model checkpoint every command reads and writes.

A model checkpoint is a folder:
  model_config.json   {"model": {ModelConfig fields}, "critic": {CriticConfig fields} | null,
                       "format": "coderl-jax-model", "version": 1}
  params/             an orbax (StandardCheckpointer) checkpoint of the parameter tree
The folder is built beside its destination and renamed into place, so an interrupted save never
leaves a half-written checkpoint under the requested name.

`load_model` also accepts other folders that hold a model (a training workdir) through readers
registered with `register_loader` or named in `LOADER_MODULES`.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import jax

from coderl_jax.config import CriticConfig, ModelConfig, from_config_dict
from coderl_jax.errors import UserError

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
_LOADERS: list[Callable[[Path, Any], "Loaded | None"]] = []


def register_loader(fn: Callable[[Path, Any], "Loaded | None"]) -> None:
    """Let `load_model` read another folder kind (e.g. a training workdir's latest model)."""
    if fn not in _LOADERS:
        _LOADERS.append(fn)


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / PARAMS_DIR).is_dir()


def _config_json(model_config: ModelConfig, critic_config: CriticConfig | None) -> dict:
    return {"format": FORMAT, "version": 1, "model": dataclasses.asdict(model_config),
            "critic": dataclasses.asdict(critic_config) if critic_config is not None else None}


def read_model_config(path: str | Path) -> tuple[ModelConfig, CriticConfig | None]:
    """The (ModelConfig, CriticConfig | None) a model checkpoint folder records."""
    p = Path(path) / CONFIG_FILE
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise UserError(f"{path} is not a model checkpoint (no {CONFIG_FILE})") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: invalid JSON ({e.msg})") from e
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise UserError(f"{p}: not a coderl-jax model config (no 'model' section)")
    model = from_config_dict(ModelConfig, data["model"])
    critic = from_config_dict(CriticConfig, data["critic"]) if data.get("critic") else None
    return model, critic


def save_model(path: str | Path, params: PyTree, model_config: ModelConfig,
               critic_config: CriticConfig | None = None) -> Path:
    """Save params + config as a model checkpoint folder at `path`, replacing one already there.

    Every process of a multi-host job calls this; process 0 writes the config and renames.
    """
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if path.exists() and not (path.is_dir() and (is_model_dir(path) or not any(path.iterdir()))):
        raise UserError(f"{path} exists and is not a model checkpoint; refusing to replace it")
    tmp = path.parent / f".{path.name}.saving"
    lead = jax.process_index() == 0
    if lead:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a stale one from an interrupted save
        tmp.mkdir()
    _sync("coderl_save_model_start")
    try:
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(tmp / PARAMS_DIR, params)
        ckptr.wait_until_finished()
        ckptr.close()
        if lead:
            with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as f:
                json.dump(_config_json(model_config, critic_config), f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if lead:
            shutil.rmtree(tmp, ignore_errors=True)
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


def load_model(path: str | Path, shardings: PyTree = None) -> Loaded:
    """(params, model_config, critic_config | None) from a model checkpoint folder.

    `shardings`: a tree of jax.sharding.Sharding matching the params (e.g. from
    partitioning.logical_to_mesh_sharding); by default params land on the first local device.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"checkpoint not found: {p}")
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
            params = ckptr.restore(p.absolute() / PARAMS_DIR, target)
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

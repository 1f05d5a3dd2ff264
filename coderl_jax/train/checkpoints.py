"""Orbax checkpoints of a training run: train state, data-iterator state, and run metadata.

`<workdir>/checkpoints/<step>/` holds three items: `state` (the sharded TrainState), `data` (each
process's iterator state, `process_<i>-of-<n>.json`) and `meta` (stage and model config, so a
checkpoint can be loaded without the config file). Saves are asynchronous and atomic: orbax
writes into a temporary folder and renames it when every process has finished (on a gs:// bucket,
which has no rename, it writes a `commit_success.txt` marker last instead), so a run killed at
any moment, even mid-save, restarts from the last complete step. Restoring takes an abstract
target carrying the *current* mesh's shardings, so a checkpoint moves between mesh shapes.
"""
from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from coderl_jax import paths
from coderl_jax.config import CheckpointConfig
from coderl_jax.errors import UserError
from coderl_jax.paths import PathLike

CHECKPOINT_DIR = "checkpoints"


# ------------------------------------------------------------------ data-iterator state item


class DataStateHandler(ocp.CheckpointHandler):
    """Saves `item.get_state()` (a JSON-able dict, or bytes) per process; restores via
    `item.set_state(...)`. Works for grain iterators and for any batch source with that pair."""

    def save(self, directory: epath.Path, args: "DataStateSave"):
        state = args.item.get_state()
        if isinstance(state, (bytes, bytearray)):
            payload = {"bytes": base64.b64encode(bytes(state)).decode("ascii")}
        else:
            payload = {"json": state}
        directory = epath.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        (directory / name).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: "DataStateRestore"):
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = epath.Path(directory) / name
        if not path.exists():
            raise UserError(f"checkpoint {directory} has no data-iterator state for this "
                            f"process ({name}); was it saved with another process count?")
        payload = json.loads(path.read_text())
        state = (base64.b64decode(payload["bytes"]) if "bytes" in payload else payload["json"])
        if args.item is not None:
            args.item.set_state(state)
        return state


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
    item: Any = None


# ------------------------------------------------------------------------------ the manager


def checkpoint_dir(workdir: PathLike) -> epath.Path:
    return paths.absolute(workdir) / CHECKPOINT_DIR


class Checkpointer:
    """Saves every `cfg.every_steps`, keeps the last `cfg.keep` (plus the best when
    `cfg.keep_best`), restores the latest complete step. Bookkeeping runs on process 0 (orbax)."""

    def __init__(self, workdir: PathLike | None, cfg: CheckpointConfig | None = None,
                 read_only: bool = False, directory: PathLike | None = None,
                 _state_handler: ocp.CheckpointHandler | None = None):
        self.cfg = cfg or CheckpointConfig()
        self.directory = paths.absolute(directory) if directory else checkpoint_dir(workdir)
        if not read_only:
            paths.check_bucket(self.directory)
        policies: list[pp.PreservationPolicy] = [pp.LatestN(max(int(self.cfg.keep), 1))]
        best = {}
        if self.cfg.keep_best:
            if self.cfg.best_mode not in ("min", "max"):
                raise UserError(f"best_mode must be min or max, got {self.cfg.best_mode!r}")
            metric = self.cfg.best_metric
            policies.append(pp.BestN(get_metric_fn=lambda m: float(m[metric]),
                                     reverse=self.cfg.best_mode == "min", n=1,
                                     keep_checkpoints_without_metrics=False))
            # best_fn makes orbax write each step's metrics, so the best survives restarts.
            best = dict(best_fn=lambda m: float(m[metric]), best_mode=self.cfg.best_mode)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.AnyPreservationPolicy(policies),
            enable_async_checkpointing=bool(self.cfg.async_save),
            cleanup_tmp_directories=not read_only,
            create=not read_only,
            read_only=read_only,
            **best,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": _state_handler or ocp.StandardCheckpointHandler(),
                           "data": DataStateHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    # -- queries
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the best `cfg.best_metric` (None when no step has metrics)."""
        scored = []
        for step in self.manager.all_steps():
            metrics = self.manager.metrics(step)
            if metrics and self.cfg.best_metric in metrics:
                scored.append((float(metrics[self.cfg.best_metric]), step))
        if not scored:
            return None
        return (min if self.cfg.best_mode == "min" else max)(scored)[1]

    def should_save(self, step: int) -> bool:
        every = int(self.cfg.every_steps)
        return every > 0 and step % every == 0

    # -- save / restore
    def save(self, step: int, state: Any, data_iterator: Any = None,
             meta: dict | None = None, metrics: dict | None = None, force: bool = True) -> bool:
        """Start an (async) save of `state` (+ the iterator's state, + meta) as `step`."""
        if step in self.manager.all_steps():
            return False
        items = {"state": ocp.args.StandardSave(state),
                 "meta": ocp.args.JsonSave(dict(meta or {}, step=int(step)))}
        if data_iterator is not None and hasattr(data_iterator, "get_state"):
            items["data"] = DataStateSave(data_iterator)
        clean = None
        if metrics is not None:
            clean = {k: float(v) for k, v in metrics.items()}
        return self.manager.save(step, args=ocp.args.Composite(**items), metrics=clean,
                                 force=force)

    def restore(self, target: Any, step: int | None = None, data_iterator: Any = None
                ) -> tuple[Any, int]:
        """Restore `state` into `target` (a tree of ShapeDtypeStructs with shardings); also the
        iterator's state when given. Returns (state, step)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no complete checkpoint in {self.directory}")
        items = {"state": ocp.args.StandardRestore(target)}
        if data_iterator is not None and hasattr(data_iterator, "set_state"):
            if (self.directory / str(step) / "data").exists():
                items["data"] = DataStateRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], step

    def meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no complete checkpoint in {self.directory}")
        return dict(self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def has_checkpoint(workdir: PathLike) -> bool:
    """Whether `workdir` (a training workdir, or its checkpoints/ folder) holds a complete step."""
    return find_checkpoints(workdir) is not None


def find_checkpoints(path: PathLike) -> epath.Path | None:
    """The checkpoints folder of a training workdir (or the folder itself) if it holds a step."""
    path = paths.absolute(path)
    for candidate in (path / CHECKPOINT_DIR, path):
        if candidate.is_dir() and any(p.name.isdigit() and (p / "state").is_dir()
                                      for p in candidate.iterdir()):
            return candidate
    return None


def load_params(path: PathLike, target: Any = None, step: int | None = None
                ) -> tuple[Any, dict]:
    """The params (and meta: stage, model config, step) of a training run's latest checkpoint.

    `path` is a training workdir or its `checkpoints/` folder. `target`: a params tree of
    ShapeDtypeStructs with shardings to restore onto; default: every array on one device.
    Only the params are read, not the optimizer state.
    """
    directory = find_checkpoints(path)
    if directory is None:
        raise UserError(f"no training checkpoint under {path}")
    # The PyTree handler reads the StandardSave format and can restore a subtree (the params).
    with Checkpointer(None, read_only=True, directory=directory,
                      _state_handler=ocp.PyTreeCheckpointHandler()) as ckpt:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no complete checkpoint in {directory}")
        meta = ckpt.meta(step)
        if target is None:
            tree = ckpt.manager.item_metadata(step)["state"]
            device = jax.local_devices()[0]
            sharding = jax.sharding.SingleDeviceSharding(device)
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                tree["params"])
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        restored = ckpt.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item={"params": target},
                                         restore_args={"params": restore_args},
                                         partial_restore=True)))
    return restored["state"]["params"], meta

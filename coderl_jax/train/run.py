"""Run one training stage from a config: typed configs, mesh, initial params, batch source,
the loop, and the final model checkpoint (`<workdir>/model`, `checkpoint_io` format)."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections

from coderl_jax import checkpoint_io, partitioning, paths
from coderl_jax.config import (
    STAGES,
    CheckpointConfig,
    CriticConfig,
    DataConfig,
    MeshConfig,
    ModelConfig,
    OptimizerConfig,
    RLConfig,
    TrainConfig,
    from_config_dict,
    model_preset,
)
from coderl_jax.errors import UserError
from coderl_jax.models import t5
from coderl_jax.models.critic import critic_params_from_actor
from coderl_jax.paths import PathLike
from coderl_jax.rl.modes import apply_mode
from coderl_jax.train import distributed
from coderl_jax.train.checkpoints import Checkpointer, has_checkpoint
from coderl_jax.train.loop import Trainer, stage_model
from coderl_jax.train.sources import make_source

FINAL_MODEL_DIR = "model"
# model fields that are run-time choices, taken from the run's config even when the
# architecture comes from an initial checkpoint
RUNTIME_MODEL_FIELDS = ("dtype", "remat", "scan_layers", "dropout_rate", "matmul_precision")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every section of a training config, typed."""

    model: ModelConfig
    critic: CriticConfig
    train: TrainConfig
    optimizer: OptimizerConfig
    checkpoint: CheckpointConfig
    mesh: MeshConfig
    data: DataConfig
    rl: RLConfig = RLConfig()  # critic / RL stages (the CodeRL loop)


def _section(cfg: ml_collections.ConfigDict, name: str) -> dict:
    if name not in cfg or cfg[name] is None:
        return {}
    value = cfg[name]
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)


def _tuples(d: dict, *keys: str) -> dict:
    for k in keys:
        if k in d and isinstance(d[k], list):
            d[k] = tuple(tuple(x) if isinstance(x, list) else x for x in d[k])
    return d


def run_config(cfg: ml_collections.ConfigDict) -> RunConfig:
    """ConfigDict (configs/X.py + overrides) -> RunConfig; unknown keys are UserErrors."""
    known = {"model", "critic", "train", "optimizer", "checkpoint", "mesh", "data", "rl"}
    unknown = sorted(set(cfg.keys()) - known)
    if unknown:
        raise UserError(f"unknown config section(s): {', '.join(unknown)}")
    model = {k: v for k, v in _section(cfg, "model").items() if v is not None}
    size = model.pop("size", None)
    model_cfg = model_preset(size, **model) if size else from_config_dict(ModelConfig, model)
    mesh = _tuples(_section(cfg, "mesh"), "ici_parallelism", "dcn_parallelism",
                   "logical_axis_rules")
    run = RunConfig(model=model_cfg,
                    critic=from_config_dict(CriticConfig, _section(cfg, "critic")),
                    train=from_config_dict(TrainConfig, _section(cfg, "train")),
                    optimizer=from_config_dict(OptimizerConfig, _section(cfg, "optimizer")),
                    checkpoint=from_config_dict(CheckpointConfig, _section(cfg, "checkpoint")),
                    mesh=from_config_dict(MeshConfig, mesh),
                    data=from_config_dict(DataConfig, _section(cfg, "data")),
                    rl=from_config_dict(RLConfig, _section(cfg, "rl")))
    if run.train.stage not in STAGES:
        raise UserError(f"unknown stage {run.train.stage!r}; choose one of {', '.join(STAGES)}")
    if run.train.num_steps < 1 or run.train.batch_size < 1 or run.train.num_microbatches < 1:
        raise UserError("train.num_steps, train.batch_size and train.num_microbatches must be >= 1")
    return apply_mode(run)  # every stage: paper_faithful warm-up batches are CodeRL's too


def initial_params(run: RunConfig) -> tuple[Any, ModelConfig]:
    """Params from `train.init_checkpoint` (a model checkpoint or a training workdir) fitted to
    the stage (a critic starts from an actor's T5 plus a fresh head), and the model config."""
    params, model_cfg, critic_cfg = checkpoint_io.load_model(run.train.init_checkpoint)
    model_cfg = dataclasses.replace(
        model_cfg, **{f: getattr(run.model, f) for f in RUNTIME_MODEL_FIELDS})
    if run.train.stage == "critic":
        if critic_cfg is None:
            params = critic_params_from_actor(t5.params_for_layout(params, model_cfg), model_cfg,
                                              run.critic, jax.random.key(run.train.seed))
        else:
            if critic_cfg != run.critic:
                raise UserError(f"init_checkpoint's critic {critic_cfg} differs from the "
                                f"config's {run.critic}")
            params = dict(params, t5=t5.params_for_layout(params["t5"], model_cfg))
    else:
        if critic_cfg is not None:
            raise UserError(f"{run.train.init_checkpoint} is a critic; the {run.train.stage} "
                            "stage trains an actor")
        params = t5.params_for_layout(params, model_cfg)
    return params, model_cfg


def with_carried_tokenizer(run: RunConfig) -> RunConfig:
    """`data.tokenizer` unset and `train.init_checkpoint` carrying a tokenizer: use that one,
    so a stage reads its programs as the model it starts from was trained to."""
    carried = None if run.data.tokenizer else checkpoint_io.tokenizer_path(
        run.train.init_checkpoint)
    if carried is None:
        return run
    return dataclasses.replace(run, data=dataclasses.replace(run.data, tokenizer=str(carried)))


def train_stage(run: RunConfig, workdir: PathLike, source: Any = None, progress: bool = True,
                save_final: bool = True, devices=None):
    """Train `run.train.stage` in `workdir` (resuming from its latest checkpoint) and save the
    final params to `<workdir>/model`. Returns the loop's TrainResult."""
    distributed.initialize(run.train.multihost)
    run = with_carried_tokenizer(run)
    mesh = partitioning.make_mesh(run.mesh, devices)
    workdir = paths.absolute(workdir)
    paths.check_bucket(workdir)
    params = None
    model_cfg = run.model
    if run.train.init_checkpoint:
        if not has_checkpoint(workdir):  # a resumed run reads its own checkpoint instead
            params, model_cfg = initial_params(run)
        else:
            with Checkpointer(workdir, read_only=True) as ckpt:
                model_cfg = from_config_dict(ModelConfig, ckpt.meta()["model"])
    net = stage_model(run.train.stage, model_cfg, run.critic)
    trainer = Trainer(run.train.stage, net, run.train, run.optimizer, mesh, workdir,
                      run.checkpoint, rules=run.mesh.logical_axis_rules,
                      initial_params=params, progress=progress)
    if source is None:
        source = make_source(run.train.stage, run.data, run.train,
                             num_classes=run.critic.num_classes, run=run, mesh=mesh,
                             model_config=model_cfg, workdir=workdir)
    result = trainer.fit(source)
    if save_final:
        checkpoint_io.save_model(workdir / FINAL_MODEL_DIR, result.state.params, net.model_config,
                                 net.critic_config, tokenizer=run.data.tokenizer or None)
    return result


def base_config(size: str = "tiny", stage: str = "warmup") -> ml_collections.ConfigDict:
    """A ConfigDict with every section at its dataclass defaults (configs/*.py start here)."""
    cfg = ml_collections.ConfigDict()
    # model: a preset size plus per-field overrides (None = the preset's value)
    cfg.model = ml_collections.ConfigDict(
        {"size": size, **{f.name: None for f in dataclasses.fields(ModelConfig)}})
    for name, cls in (("critic", CriticConfig), ("train", TrainConfig),
                      ("optimizer", OptimizerConfig), ("checkpoint", CheckpointConfig),
                      ("mesh", MeshConfig), ("data", DataConfig), ("rl", RLConfig)):
        cfg[name] = ml_collections.ConfigDict(dataclasses.asdict(cls()))
    cfg.train.stage = stage
    return cfg

"""Typed, frozen configuration, built once from an ml_collections config file.

Library code receives these dataclasses, never a ConfigDict. `load_config(path, overrides)` reads
`configs/X.py` (a module with `get_config()`), applies `--config.a.b=v` overrides and returns
the ConfigDict; `model_config(cfg.model)` and friends turn sections into dataclasses.

The configs ship with the package (`configs/` of a checkout is the subpackage `coderl_jax.configs`
of an installed one): a config path that exists is used as given; otherwise `configs/X.py`, `X.py`
or `X` name the shipped config X, so `--config configs/tiny.py` works from any folder.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import ml_collections

from coderl_jax.errors import UserError

OVERRIDE_PREFIX = "--config."
MATMUL_PRECISIONS = ("auto", "default", "high", "highest")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A T5 v1.0 / CodeT5 encoder-decoder (SPEC §7).

    `matmul_precision` is the `jax.lax.Precision` of every matmul and einsum of the model
    (forward and backward, so training, sampling and critic scoring alike): "default", "high",
    "highest", or "auto" = "highest" on GPUs and "default" on CPU and TPU. On a GPU, JAX's
    default float32 precision rounds matmul operands to TF32 (10-bit mantissa), which breaks
    parity with HF's float32 PyTorch model; "highest" keeps float32. On CPU every precision is
    full float32. On TPU "default" is one bfloat16 pass (the configs that run there compute in
    bfloat16 anyway); ask for "highest" for float32 parity checks there.
    """

    vocab_size: int = 32100
    d_model: int = 512
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    d_kv: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    tie_word_embeddings: bool = True
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    decoder_start_token_id: int = 0
    dtype: str = "float32"  # compute dtype: float32 on CPU, bfloat16 on TPU
    param_dtype: str = "float32"
    remat: bool = False  # rematerialise each layer in the backward pass
    scan_layers: bool = False  # lax.scan over the layer stack (fast compiles at depth)
    matmul_precision: str = "auto"  # auto | default | high | highest (see the docstring)

    def __post_init__(self):
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise UserError(f"model.matmul_precision must be one of "
                            f"{', '.join(MATMUL_PRECISIONS)}; got {self.matmul_precision!r}")


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    """CodeRL's error head on top of the decoder (SPEC §7)."""

    num_classes: int = 4  # 4: compile error, runtime error, failed, passed; 2: binary
    hidden: int = 128


# Model shapes (SPEC §7). `tiny` is for tests and the demo.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, d_ff=256, num_encoder_layers=2, num_decoder_layers=2, num_heads=4,
                 d_kv=16),
    "small": dict(d_model=512, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6,
                  num_heads=8, d_kv=64),
    "base": dict(d_model=768, d_ff=3072, num_encoder_layers=12, num_decoder_layers=12,
                 num_heads=12, d_kv=64),
    "large": dict(d_model=1024, d_ff=4096, num_encoder_layers=24, num_decoder_layers=24,
                  num_heads=16, d_kv=64),
}


def model_preset(size: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig for a named size (tiny/small/base/large), with overrides."""
    if size not in MODEL_SIZES:
        raise UserError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    return ModelConfig(**{**MODEL_SIZES[size], **overrides})


def from_config_dict(cls, section: ml_collections.ConfigDict | dict | None):
    """Build dataclass `cls` from a config section; unknown keys are an error."""
    if section is None:
        return cls()
    values = section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**values)


def configs_dir() -> Path:
    """The configs shipped with the package: coderl_jax/configs when installed, else (a source
    checkout, editable install or PYTHONPATH) configs/ beside the package."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def config_path(path: str | Path) -> Path:
    """`path` when it is a file; else the shipped config that `configs/X.py`, `X.py` or `X` names.
    Any other missing path is a UserError."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parent in (Path("."), Path("configs")) and p.name:
        shipped = configs_dir() / (p.name if p.suffix == ".py" else f"{p.name}.py")
        if shipped.is_file():
            return shipped
        raise UserError(f"config file not found: {path} (nor {shipped.name} among the shipped "
                        f"configs in {shipped.parent})")
    raise UserError(f"config file not found: {path}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> ml_collections.ConfigDict:
    """Import `path` (a python file with get_config(); see `config_path`) and apply `a.b=v`
    overrides.

    `FILE.py:ARG` calls get_config(ARG) (ml_collections' convention), e.g. a pod topology."""
    path, arg = str(path), None
    if not Path(path).is_file() and ":" in path:
        path, arg = path.rsplit(":", 1)
    path = config_path(path)
    spec = importlib.util.spec_from_file_location(f"_coderl_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken config file is user input
        raise UserError(f"cannot load config {path}: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise UserError(f"config {path} has no get_config()")
    if arg is None:
        cfg = module.get_config()
    else:
        try:
            cfg = module.get_config(arg)
        except TypeError as e:
            raise UserError(f"config {path} takes no argument (got {arg!r})") from e
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def apply_override(cfg: ml_collections.ConfigDict, item: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as a Python literal when it can be."""
    key, sep, raw = item.partition("=")
    if not sep:
        raise UserError(f"override {item!r} is not of the form key=value")
    key = key.removeprefix("--").removeprefix("config.")
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        if p not in node:
            raise UserError(f"unknown config key {key!r}")
        node = node[p]
    if leaf not in node:
        raise UserError(f"unknown config key {key!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    old = node[leaf]
    if isinstance(old, bool) and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise UserError(f"config key {key!r} needs true/false, got {raw!r}")
        value = value.lower() == "true"
    elif isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        with cfg.unlocked() if hasattr(cfg, "unlocked") else _null():
            node[leaf] = value
    except (TypeError, ValueError) as e:
        raise UserError(f"config key {key!r}: {e}") from e


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the other arguments, the `a.b=v` overrides) of a command line: `--config.a.b=v` and
    `--config.a.b v` are overrides, in the order given."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith(OVERRIDE_PREFIX):
            if "=" in a:
                overrides.append(a[len("--"):])
            elif i + 1 < len(argv):
                overrides.append(a[len("--"):] + "=" + argv[i + 1])
                i += 1
            else:
                raise UserError(f"{a} needs a value")
        else:
            rest.append(a)
        i += 1
    return rest, overrides


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---------------------------------------------------------------------------------------------
# Training: mesh, optimizer, train loop, checkpoints, data.

# Logical axis name -> mesh axis (or axes, or None = replicated), in priority order: a logical name
# takes the first rule whose mesh axes are still free in that array, so activations
# [batch, length, embed] put batch on (data, fsdp) and leave embed replicated while parameters
# [embed, mlp] shard embed over fsdp (T5X's `standard_logical_axis_rules` plus MaxText's fsdp).
DEFAULT_LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("embed", "fsdp"),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("layers", None),
    ("classes", None),
    ("critic_hidden", None),
    ("vocab", None),
    ("mlp", None),
    ("heads", None),
    ("joined_kv", None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh ('data', 'fsdp', 'model'): within a slice (ICI) and across slices (DCN).

    At most one entry of each tuple may be -1: it is filled in from the device count.
    """

    ici_parallelism: tuple[int, int, int] = (-1, 1, 1)
    dcn_parallelism: tuple[int, int, int] = (1, 1, 1)
    logical_axis_rules: tuple[tuple[str, Any], ...] = DEFAULT_LOGICAL_AXIS_RULES


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW (optax's or CodeRL's, `rule`) with global-norm clipping and a warm-up + decay
    learning-rate schedule."""

    learning_rate: float = 2e-5
    schedule: str = "linear"  # constant | linear | cosine (decay after warm-up)
    warmup_steps: int = 0
    decay_steps: int = 0  # 0: decay over the whole run (TrainConfig.num_steps)
    end_learning_rate_ratio: float = 0.0  # final lr = learning_rate * ratio
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled; on the weights `rule` names (optax: matrices only)
    grad_clip_norm: float = 1.0  # 0 disables clipping
    # "optax": optax.adamw, decay on matrices; "hf_adamw": transformers 4.16's AdamW with HF
    # Trainer's decay list, as CodeRL's train_*.sh ran (train/state.py); "" = hf_adamw under
    # rl.mode=paper_faithful, else optax
    rule: str = ""


STAGES = ("warmup", "critic", "offline_rl", "online_rl")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run of a stage (SPEC §2 `coderl train`)."""

    stage: str = "warmup"  # warmup | critic | offline_rl | online_rl
    num_steps: int = 100
    batch_size: int = 8  # global batch (rows), split over data x fsdp
    num_microbatches: int = 1  # gradient accumulation: batch_size % num_microbatches == 0
    seed: int = 0
    dropout: bool = True  # False: deterministic forward in training
    log_every: int = 10
    init_checkpoint: str = ""  # initial params (e.g. converted CodeT5); "" = random init
    # RL (offline_rl / online_rl): loss = rl_weight * RL + ce_weight * CE on ground truth
    # ("sum": every step, CodeRL pairs each sampled program with a ground-truth one) or one of
    # the two on alternate steps ("alternate": even steps RL, odd steps CE) or, as CodeRL's
    # trainer, on alternate microbatches of each update ("micro_alternate": even micro-steps CE,
    # odd RL, per-sequence token means, update = mean of micro-losses; rl.mode=paper_faithful).
    rl_mix: str = "sum"
    rl_weight: float = 1.0
    ce_weight: float = 1.0
    # Critic: CodeRL max-pools the error head over every decoder position, padding included.
    critic_pool_padding: bool = False
    # A source longer than data.max_source_len: "eos" keeps a final </s> (HF truncation, as
    # CodeRL's generate.py), "plain" just cuts (CodeRL's training data; rl.mode=paper_faithful).
    source_cut: str = "eos"
    # Warm-up CE: False = mean over the batch's real target tokens; True = mean over sequences of
    # per-sequence token means (CodeRL: one sequence per micro-batch; rl.mode=paper_faithful).
    sequence_mean: bool = False
    multihost: bool = False  # jax.distributed.initialize (or env CODERL_MULTIHOST=1)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpoints of the train state and the data iterator, under <workdir>/checkpoints."""

    every_steps: int = 100  # 0: only at the end
    keep: int = 3  # the last K
    keep_best: bool = False  # also keep the one with the best `best_metric`
    best_metric: str = "loss"
    best_mode: str = "min"  # min | max
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a stage's batches come from (the data pipeline builds fixed-shape numpy batches)."""

    problems: str = "demo"  # SPEC §2 SRC
    split: str = ""  # "" = the source's default
    programs: str = ""  # critic / offline RL: rows of generated programs with results (jsonl)
    tokenizer: str = ""  # "" = $CODERL_TOKENIZER, else the packaged CodeT5 tokenizer
    max_source_len: int = 600
    max_target_len: int = 512
    shuffle_seed: int = 0


# ---------------------------------------------------------------------------------------------
# The CodeRL loop: critic data, critic training, offline and online RL.

RL_MODES = ("fixed", "paper_faithful")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """Settings of the critic, offline_rl and online_rl stages (the `rl` config section).

    `mode="paper_faithful"` reproduces CodeRL's quirks: encoder inputs padded with EOS and no
    attention mask, the critic max-pooled over padded decoder positions, and CE / RL on
    alternate micro-steps (it sets train.rl_mix="micro_alternate" and
    train.critic_pool_padding=True);
    `"fixed"` uses real masks and keeps train.rl_mix / critic_pool_padding as configured.
    """

    mode: str = "fixed"  # fixed | paper_faithful
    baseline: str = "greedy"  # greedy (CodeRL) | mean_others (GRPO-style) | none
    critic_checkpoint: str = ""  # frozen critic for token-level returns ("" = sequence returns)
    greedy_programs: str = ""  # offline: executed greedy programs (jsonl or CodeRL layout)
    # critic stage
    critic_ground_truth: bool = True  # ground-truth programs count as passed (CodeRL)
    eval_programs: str = ""  # held-out executed programs ("" = hold out eval_fraction)
    eval_problems: str = ""  # problems of eval_programs ("" = data.problems)
    eval_split: str = ""  # split of eval_problems ("" = the source's default)
    eval_fraction: float = 0.1  # share of data.programs' problems held out when no eval_programs
    eval_every: int = 0  # held-out evaluation every N steps (0: at the end only)
    # online RL
    num_samples: int = 4  # programs per problem and iteration (batch = problems x samples)
    temperature: float = 0.6  # CodeRL samples with 0.6, top-p 0.95 and top-k 50 (the
    top_p: float = 0.95  # default of the transformers 4.16 `generate` its generate.py ran)
    top_k: int = 50  # 0: off
    max_new_tokens: int = 0  # 0: data.max_target_len
    overlap_depth: int = 1  # executions in flight while the device samples/learns (0: serial)
    workers: int = 2  # sandbox processes
    timeout: float = 4.0  # seconds per test
    harness: str = ""  # real | coderl (CodeRL's in-process labels); "": coderl iff paper_faithful
    critic_refresh_every: int = 0  # retrain the critic on new outcomes every N steps (0: never)
    critic_refresh_steps: int = 1  # critic updates per refresh

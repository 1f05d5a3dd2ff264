"""Problems and program rows → fixed-shape numpy batches for each stage, with grain.

Stages and their examples (one example = one batch row):
  - warm-up (`warmup_examples`): the prompt → each reference solution of each problem;
  - critic (`critic_examples`): the prompt, a generated program → its outcome class;
  - RL (`rl_examples`): the prompt, a sampled program → its per-token returns;
  - sampling (`sampling_examples`): the prompt only, one row per problem.
Every batch is a dict of numpy arrays of fixed shape (B = per-host batch size, S / T = source /
target length):
    encoder_ids [B,S] int32, encoder_mask [B,S] int32 (1 = real token)
    targets [B,T] int32, target_mask [B,T] int32                (warm-up, critic, RL)
    labels [B] int32 (outcome class: result + 2, or 1/0 binary)  (critic)
    token_returns [B,T] float32                                   (RL)
    index [B] int32 (the example's position in its list, -1 on padding rows)
    valid [B] int32 (0 on padding rows)
Padding rows (only in finite pipelines that do not drop the remainder) have encoder_ids = [EOS],
all-zero target masks, labels and returns, and valid = 0: token-masked losses ignore them as is,
per-example losses (the critic's) must weight by `valid`.

Tokenisation follows CodeRL (`datasets/apps_dataset.py`): the source is `tokenizer.encode(prompt)`
= `<s> prompt </s>`, cut to S keeping a final `</s>` (`prompts.truncate_prompt`, as HF's
truncation do); CodeRL pads it with `</s>` and attends to the padding, we pad with 0 and mask it.
A target program is `tokenizer.encode(code)` = `<s> code </s>` (CodeRL keeps the `<s>`: its
CodeT5 learns to emit `<s>` first, then the program, then `</s>`; `target_bos=False` drops it),
ground-truth programs first go through CodeRL's `reindent_code` (`coderl_reindent`: indents
become tabs, line ends "\n"; kept verbatim where that would break a compiling program, or with
`reindent_solutions=False`), cut plainly to T as
CodeRL does (a program longer than T loses its `</s>` rather than teaching the
model to stop mid-program), padded with 0. The train step's decoder input is
`shift_right(targets, 0)`. RL and critic rows that carry the sampled `output_ids` use those ids
unchanged (so per-token returns stay aligned); rows with only `code` are tokenised as above.

Order: a deterministic shuffle (grain's index shuffle, reseeded each epoch) of the examples,
repeated for `num_epochs` (None: forever), then host `process_index` of `process_count` takes
every `process_count`-th example: slices are disjoint and together complete. In finite pipelines
every host gets the same number of full batches (the global stream is padded, or cut when
`drop_remainder`). The iterator (`make_iterator`) is grain's: `get_state()` / `set_state()`
resume on the same batch.
"""
from __future__ import annotations

import dataclasses
import io
import math
import warnings
from typing import Mapping, Sequence

import grain
import numpy as np

from coderl_jax.config import DataConfig, TrainConfig
from coderl_jax.data.prompts import build_prompt, truncate_prompt
from coderl_jax.data.records import Problem
from coderl_jax.data.sources import problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.rl.rewards import outcome_class

# the kinds of batch `make_batches` builds (`config.STAGES` are the training stages)
BATCH_KINDS = ("warmup", "critic", "rl", "sampling")
_PAD_EXAMPLE: dict = {"index": -1, "pad": True}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """How examples become batches (per host)."""

    batch_size: int = 8  # rows per host and batch
    max_source_len: int = 600
    max_target_len: int = 512
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever
    drop_remainder: bool = False  # finite pipelines: drop the last partial batch, else pad it
    target_bos: bool = True  # keep the `<s>` CodeRL's targets start with
    reindent_solutions: bool = True  # CodeRL's reindent_code on ground-truth programs
    num_classes: int = 4  # critic labels: 4 outcome classes or 2 (passed / not)
    prompt_style: str = "train"  # prompts.build_prompt style
    source_cut: str = "eos"  # a long source: "eos" keeps a final </s> (HF), "plain" (CodeRL's
    # training data: `input_ids[:600]`) just cuts
    read_threads: int = 2  # grain threads building batches
    prefetch_batches: int = 4

    def __post_init__(self):
        if self.batch_size < 1 or self.max_source_len < 2 or self.max_target_len < 1:
            raise UserError("batch_size >= 1, max_source_len >= 2 and max_target_len >= 1 needed")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise UserError(f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.source_cut not in ("eos", "plain"):
            raise UserError(f"source_cut must be eos or plain, got {self.source_cut!r}")


def training_config(data: DataConfig, train: TrainConfig, num_classes: int = 4) -> PipelineConfig:
    """A training stage's pipeline: this host's share of `train.batch_size`, shuffled, endless."""
    _, count = host_info(None, None)
    return PipelineConfig(batch_size=train.batch_size // count, max_source_len=data.max_source_len,
                          max_target_len=data.max_target_len, seed=data.shuffle_seed,
                          shuffle=True, num_epochs=None, num_classes=num_classes,
                          source_cut=train.source_cut)


# --------------------------------------------------------------------------------- examples
def coderl_reindent(code: str) -> str:
    """CodeRL's `reindent_code` (APPS's reindent.py with CodeRL's settings) on a program.

    The leading whitespace of the first indented, non-blank line is the indent unit (tabs if it
    starts with a tab: that many tabs, else that many spaces); on that line and every later one
    each leading repetition of the unit becomes one tab; earlier lines stay as they are. Line ends
    become "\n" and every line, the last included, ends with one. Applied, as in CodeRL, to the
    ground-truth programs only, never to sampled ones.
    """
    unit = None
    lines = []
    for raw in io.StringIO(code):  # splits on "\n" only, like CodeRL's readline loop
        line = raw.rstrip("\r\n")
        if unit is None:
            if not line or line[0] not in " \t" or line.isspace():
                lines.append(line)
                continue
            width = len(line) - len(line.lstrip(" \t"))
            unit = ("\t" if line[0] == "\t" else " ") * width
        level = 0
        while line.startswith(unit * (level + 1)):
            level += 1
        lines.append("\t" * level + line[len(unit) * level:])
    return "".join(line + "\n" for line in lines)


def _compiles(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes etc. in dataset code are not ours
        try:
            compile(code, "<solution>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return False
    return True


def reindent_solution(code: str) -> str:
    """`coderl_reindent(code)`, unless that breaks a program that compiled before (it does for
    about 1% of MBPP, whose tab/space mixes it turns into TabErrors): then `code` unchanged."""
    new = coderl_reindent(code)
    if new == code or _compiles(new) or not _compiles(code):
        return new
    return code


def warmup_examples(problems: Sequence[Problem], prompt_style: str = "train",
                    reindent: bool = True) -> list[dict]:
    """One example per reference solution: prompt → solution (problems without any are skipped);
    `reindent`: `reindent_solution` on each (done lazily, per batch)."""
    out = []
    for p in problems:
        prompt = build_prompt(p, prompt_style) if p.solutions else ""
        for k, code in enumerate(p.solutions):
            out.append({"index": len(out), "problem_id": p.problem_id, "solution_index": k,
                        "prompt": prompt, "target": code, "reindent": reindent})
    return out


def sampling_examples(problems: Sequence[Problem], prompt_style: str = "train") -> list[dict]:
    """One example per problem: the prompt only (`index` = the problem's position)."""
    return [{"index": i, "problem_id": p.problem_id, "prompt": build_prompt(p, prompt_style)}
            for i, p in enumerate(problems)]


def _program_fields(row: Mapping, where: str) -> dict:
    """A row's program: its `output_ids` when present (kept exactly), else its `code` text."""
    ids = row.get("output_ids")
    if ids is not None:
        if not isinstance(ids, (list, tuple)) or not all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
            raise UserError(f"{where}: 'output_ids' must be a list of token ids")
        return {"target_ids": [int(i) for i in ids]}
    code = row.get("code")
    if not isinstance(code, str):
        raise UserError(f"{where}: the row needs 'code' (a string) or 'output_ids'")
    return {"target": code}


def problem_of(row: Mapping, problems_by_id: Mapping[str, Problem], where: str) -> Problem:
    pid = row.get("problem_id")
    if pid is None:
        raise UserError(f"{where}: missing 'problem_id'")
    problem = problems_by_id.get(str(pid))
    if problem is None:
        raise UserError(f"{where}: problem {pid!r} is not among the problems given")
    return problem


def critic_examples(problems_by_id: Mapping[str, Problem], rows: Sequence[Mapping],
                    num_classes: int = 4, prompt_style: str = "train") -> list[dict]:
    """One example per executed program row (`problem_id`, `code`/`output_ids`, `result`)."""
    prompts: dict[str, str] = {}
    out = []
    for n, row in enumerate(rows):
        where = f"program row {n}"
        problem = problem_of(row, problems_by_id, where)
        if "result" not in row:
            raise UserError(f"{where}: missing 'result' (run `coderl run-tests` first)")
        try:
            label = outcome_class(row["result"], num_classes)
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: {e}") from e
        if problem.problem_id not in prompts:
            prompts[problem.problem_id] = build_prompt(problem, prompt_style)
        out.append({"index": n, "problem_id": problem.problem_id,
                    "prompt": prompts[problem.problem_id], "label": label,
                    **_program_fields(row, where)})
    return out


def rl_examples(problems_by_id: Mapping[str, Problem], rows: Sequence[Mapping],
                prompt_style: str = "train") -> list[dict]:
    """One example per sampled program row: `problem_id`, `output_ids` (or `code`) and either
    `token_returns` (one per program token) or a scalar `return` spread over its tokens."""
    prompts: dict[str, str] = {}
    out = []
    for n, row in enumerate(rows):
        where = f"program row {n}"
        problem = problem_of(row, problems_by_id, where)
        fields = _program_fields(row, where)
        if "token_returns" in row:
            returns = row["token_returns"]
            if not isinstance(returns, (list, tuple, np.ndarray)):
                raise UserError(f"{where}: 'token_returns' must be a list of numbers")
            returns = np.asarray(returns, dtype=np.float32)
            if returns.ndim != 1:
                raise UserError(f"{where}: 'token_returns' must be one list of numbers")
            if "target_ids" in fields and len(returns) != len(fields["target_ids"]):
                raise UserError(f"{where}: {len(returns)} token returns for "
                                f"{len(fields['target_ids'])} output ids")
            fields["token_returns"] = returns
        elif "return" in row:
            fields["sequence_return"] = float(row["return"])
        else:
            raise UserError(f"{where}: the row needs 'token_returns' or 'return'")
        if problem.problem_id not in prompts:
            prompts[problem.problem_id] = build_prompt(problem, prompt_style)
        out.append({"index": n, "problem_id": problem.problem_id,
                    "prompt": prompts[problem.problem_id], **fields})
    return out


# --------------------------------------------------------------------------------- tokens
class Collate:
    """A list of examples → one fixed-shape batch (see module docstring)."""

    def __init__(self, tokenizer, config: PipelineConfig, stage: str):
        if stage not in BATCH_KINDS:
            raise UserError(f"unknown stage {stage!r}; choose one of {', '.join(BATCH_KINDS)}")
        self.tokenizer, self.config, self.stage = tokenizer, config, stage

    def _targets(self, examples: Sequence[dict]) -> list[list[int]]:
        """Target ids per example: given ids as they are, code texts tokenised in one call."""
        texts = [(i, reindent_solution(e["target"]) if e.get("reindent") else e["target"])
                 for i, e in enumerate(examples) if "target" in e]
        encoded = self.tokenizer.batch_encode([t for _, t in texts]) if texts else []
        out: list[list[int]] = [e.get("target_ids", []) for e in examples]
        for (i, _), ids in zip(texts, encoded):
            out[i] = ids if self.config.target_bos else ids[1:]
        return out

    def __call__(self, examples: Sequence[dict]) -> dict[str, np.ndarray]:
        cfg, tok = self.config, self.tokenizer
        B, S, T = cfg.batch_size, cfg.max_source_len, cfg.max_target_len
        real = [e for e in examples if not e.get("pad")]
        if len(examples) > B:
            raise ValueError(f"{len(examples)} examples for a batch of {B}")
        batch = {"encoder_ids": np.zeros((B, S), np.int32),  # [B, S]
                 "encoder_mask": np.zeros((B, S), np.int32),
                 "index": np.full((B,), -1, np.int32),
                 "valid": np.zeros((B,), np.int32)}
        # padding rows: one EOS token, so no row attends to nothing
        batch["encoder_ids"][:, 0] = tok.eos_id
        batch["encoder_mask"][:, 0] = 1
        rows = [r for r, e in enumerate(examples) if not e.get("pad")]
        sources = tok.batch_encode([e["prompt"] for e in real])
        for r, e, ids in zip(rows, real, sources):
            ids = truncate_prompt(ids, S, tok.eos_id, plain=cfg.source_cut == "plain")
            batch["encoder_ids"][r, :len(ids)] = ids
            batch["encoder_mask"][r, :len(ids)] = 1
            batch["index"][r] = e["index"]
            batch["valid"][r] = 1
        if self.stage == "sampling":
            return batch
        batch["targets"] = np.zeros((B, T), np.int32)  # [B, T]
        batch["target_mask"] = np.zeros((B, T), np.int32)
        targets = self._targets(real)
        for r, ids in zip(rows, targets):
            ids = ids[:T]
            batch["targets"][r, :len(ids)] = ids
            batch["target_mask"][r, :len(ids)] = 1
        if self.stage == "critic":
            batch["labels"] = np.zeros((B,), np.int32)
            for r, e in zip(rows, real):
                batch["labels"][r] = e["label"]
        elif self.stage == "rl":
            returns = np.zeros((B, T), np.float32)  # [B, T]
            for r, e, ids in zip(rows, real, targets):
                n = min(len(ids), T)
                if "token_returns" in e:
                    values = np.asarray(e["token_returns"], np.float32)[:T]
                    if len(values) != n:
                        raise UserError(f"example {e['index']}: {len(e['token_returns'])} token "
                                        f"returns for {len(ids)} program tokens")
                    returns[r, :n] = values
                else:
                    returns[r, :n] = e["sequence_return"]
            batch["token_returns"] = returns
        return batch


# --------------------------------------------------------------------------------- datasets
def host_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(index, count) of this host: the given values, else jax's."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return process_index, process_count


def make_dataset(examples: Sequence[dict], tokenizer, config: PipelineConfig, stage: str, *,
                 process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
    """This host's batches (a grain MapDataset: `len()`, random access, `make_iterator`)."""
    if not examples:
        raise UserError(f"no {stage} examples (no problems with solutions / no program rows?)")
    index, count = host_info(process_index, process_count)
    ds = grain.MapDataset.source(list(examples))
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    ds = ds.repeat(config.num_epochs)  # reseeds the shuffle each epoch
    if config.num_epochs is not None:
        # every host must see the same number of full batches (collectives would hang otherwise)
        unit = count * config.batch_size
        total = len(ds)
        if config.drop_remainder:
            keep = (total // unit) * unit
            if keep == 0:
                raise UserError(f"{total} {stage} examples make no full batch of "
                                f"{config.batch_size} on each of {count} hosts")
            ds = ds[:keep]
        else:
            padded = math.ceil(total / unit) * unit
            if padded > total:
                pad = grain.MapDataset.source([_PAD_EXAMPLE] * (padded - total))
                ds = grain.MapDataset.concatenate([ds, pad])
    ds = ds[index::count]
    return ds.batch(config.batch_size, drop_remainder=config.drop_remainder,
                    batch_fn=Collate(tokenizer, config, stage))


def make_iterator(dataset: grain.MapDataset, config: PipelineConfig | None = None,
                  state: dict | None = None) -> grain.DatasetIterator:
    """A checkpointable iterator over `dataset` (`get_state()` / `set_state(state)`)."""
    config = config or PipelineConfig()
    options = grain.ReadOptions(num_threads=config.read_threads,
                                prefetch_buffer_size=config.prefetch_batches)
    it = iter(dataset.to_iter_dataset(options))
    if state is not None:
        it.set_state(state)
    return it


class ZipSource:
    """Batches of two sources merged into one (the second's keys get a prefix); checkpointable."""

    def __init__(self, first, second, prefix: str = "gt_"):
        self.first, self.second, self.prefix = first, second, prefix

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        a = next(self.first)
        b = next(self.second)
        out = dict(a)
        out.update({self.prefix + k: v for k, v in b.items()})
        return out

    def get_state(self) -> dict:
        return {"first": self.first.get_state(), "second": self.second.get_state()}

    def set_state(self, state: dict) -> None:
        self.first.set_state(state["first"])
        self.second.set_state(state["second"])


def make_batches(stage: str, tokenizer, config: PipelineConfig, *,
                 problems: Sequence[Problem] = (), rows: Sequence[Mapping] = (),
                 process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
    """The batches of a stage from problems (and, for critic / RL, executed program rows)."""
    if stage == "warmup":
        examples = warmup_examples(problems, config.prompt_style, config.reindent_solutions)
    elif stage == "sampling":
        examples = sampling_examples(problems, config.prompt_style)
    else:
        table = problems_by_id(list(problems))
        if stage == "critic":
            examples = critic_examples(table, rows, config.num_classes, config.prompt_style)
        elif stage == "rl":
            examples = rl_examples(table, rows, config.prompt_style)
        else:
            raise UserError(f"unknown stage {stage!r}; choose one of {', '.join(BATCH_KINDS)}")
    return make_dataset(examples, tokenizer, config, stage, process_index=process_index,
                        process_count=process_count)


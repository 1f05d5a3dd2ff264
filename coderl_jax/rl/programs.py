"""Executed program rows from any of the forms the CodeRL loop writes or reads.

A PROGRAMS path (`data.programs`, `rl.greedy_programs`, `rl.eval_programs`) is one of:
  - a JSON-lines file of rows (`coderl generate` + `coderl run-tests`, or `coderl critic-score`);
  - a `coderl critic-data` folder (its `programs.jsonl` / `greedy.jsonl` are read);
  - a CodeRL layout folder (`<problem_id>/gen_solutions.json`, `baseline_solutions.json`), e.g.
    the one CodeRL's own scripts write into APPS problem folders;
  - a prepared TFDS folder of critic data (`dataset_info.json`, array_record; see
    `programs_tfds`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from etils import epath

from coderl_jax import paths
from coderl_jax.data.pipeline import PipelineConfig, coderl_reindent
from coderl_jax.data.sources import load_problems
from coderl_jax.errors import UserError
from coderl_jax.files import read_jsonl
from coderl_jax.paths import PathLike
from coderl_jax.rl.coderl_layout import read_layout
from coderl_jax.rl.programs_tfds import read_tfds_rows
from coderl_jax.rl.rewards import normalize_result

SAMPLES_FILE = "programs.jsonl"
GREEDY_FILE = "greedy.jsonl"
TFDS_DIR = "array_record"


def _is_tfds(folder: epath.Path) -> bool:
    """A prepared TFDS folder, or the data_dir above one (<name>/<version>/dataset_info.json)."""
    return (folder / "dataset_info.json").is_file() or any(folder.glob("*/*/dataset_info.json"))


def load_program_rows(path: PathLike) -> list[dict]:
    """The sampled program rows at `path` (see module docstring)."""
    path = paths.as_path(path)
    if path.is_file():
        return read_jsonl(path)
    if not path.is_dir():
        paths.check_bucket(path)
        raise UserError(f"programs not found: {path} (a .jsonl file or a critic-data / CodeRL "
                        "layout folder)")
    if (path / SAMPLES_FILE).is_file():
        return read_jsonl(path / SAMPLES_FILE)
    if _is_tfds(path):
        return read_tfds_rows(path, "samples")
    rows, _ = read_layout(path)
    if not rows:
        raise UserError(f"{path}: no programs (no {SAMPLES_FILE} and no "
                        "<problem>/gen_solutions.json inside)")
    return rows


def load_greedy_results(path: PathLike) -> dict[str, int]:
    """`{problem_id: result}` of the greedy (baseline) programs at `path`."""
    path = paths.as_path(path)
    if path.is_file():
        rows = read_jsonl(path)
    elif path.is_dir() and (path / GREEDY_FILE).is_file():
        rows = read_jsonl(path / GREEDY_FILE)
    elif path.is_dir() and _is_tfds(path):
        rows = read_tfds_rows(path, "greedy")
    elif path.is_dir():
        _, greedy = read_layout(path)
        if not greedy:
            raise UserError(f"{path}: no greedy programs (no {GREEDY_FILE} and no "
                            "<problem>/baseline_solutions.json inside)")
        return greedy
    else:
        paths.check_bucket(path)
        raise UserError(f"greedy programs not found: {path}")
    out = {}
    for n, row in enumerate(rows):
        try:
            out[str(row["problem_id"])] = normalize_result(row["result"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: greedy row {n} lacks a valid problem_id/result ({e})") from e
    return out


def greedy_source_for(programs: PathLike) -> epath.Path | None:
    """Where the greedy results of a PROGRAMS path live when none is given: the same folder
    (critic-data / CodeRL layout) or a `greedy.jsonl` beside a rows file; None if nowhere."""
    p = paths.as_path(programs)
    if p.is_dir():
        if (p / GREEDY_FILE).is_file() or _is_tfds(p):
            return p
        if any(c.is_dir() and (c / "baseline_solutions.json").is_file() for c in p.iterdir()):
            return p
        return None
    beside = p.with_name(GREEDY_FILE)
    return beside if beside.is_file() else None


def stage_inputs(ctx, missing: str) -> tuple:
    """(data, train, run, rl, tokenizer, problems, program rows) of a stage trained on executed
    programs (critic, offline RL), from its `StageContext`; `missing` is the error when
    `data.programs` is unset."""
    data = ctx.data
    tokenizer = ctx.load_tokenizer()
    if not data.programs:
        raise UserError(missing)
    problems = load_problems(data.problems, data.split or None)
    return (data, ctx.train, ctx.run, ctx.rl, tokenizer, problems,
            load_program_rows(data.programs))


# ---- CodeRL's RL samples (rl.mode=paper_faithful) ----------------------------------------------
# CodeRL's RL data is what `generate.py --critic_scores` pickles (`generate_critic_inputs`) and
# `datasets/apps_dataset.py` (`load_rl_samples`, `sample_rl_task`) reads back: each sample's
# source is the generate.py prompt, HF-truncated to the source length (a final </s> kept), and
# its target is `tokenizer.encode(reindent_code(code))` (`<s> code </s>`) cut plainly to the
# target length -- the program re-tokenised from its text, not the ids the actor sampled. The
# critic's token scores and the returns are computed on those tokens. (The ground-truth half of
# each RL batch keeps the training prompt and plain cut, as CodeRL's `sample_task`.)
CODERL_RL_PROMPT_STYLE = "generate"


def coderl_rl_config(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` for CodeRL's RL samples: the generate.py prompt, truncation keeping `</s>`."""
    return dataclasses.replace(cfg, prompt_style=CODERL_RL_PROMPT_STYLE, source_cut="eos")


def coderl_rl_rows(rows: Sequence[Mapping], tokenizer, max_target_len: int) -> list[dict]:
    """Copies of program rows whose `output_ids` are the re-tokenised, reindented program cut to
    `max_target_len` (see above). The program's text is, as CodeRL's, the decoded sampled ids
    (`output_ids`, special tokens skipped), else the row's `code`. Critic scores stay only where
    they were computed on exactly the new ids (`program_ids`); others are dropped, to be
    recomputed."""
    texts = []
    for n, row in enumerate(rows):
        if row.get("output_ids") is not None:
            texts.append(tokenizer.decode(row["output_ids"], skip_special_tokens=True))
        elif isinstance(row.get("code"), str):
            texts.append(row["code"])
        else:
            raise UserError(f"program row {n}: needs 'output_ids' or 'code' (a string)")
    encoded = tokenizer.batch_encode([coderl_reindent(text) for text in texts])
    out = []
    for row, ids in zip(rows, encoded):
        ids = list(ids[:max_target_len])
        new = {k: v for k, v in row.items() if k not in ("output_ids", "return", "token_returns")}
        if row.get("program_ids") != ids:
            for key in ("program_ids", "token_probs", "probs", "prompt_ids"):
                new.pop(key, None)
        new["output_ids"] = ids
        out.append(new)
    return out

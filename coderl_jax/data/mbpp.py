"""MBPP (Austin et al. 2021) from its .jsonl file → `Problem` records.

Each line: `task_id`, `text`, `code`, `test_list` (asserts), `test_setup_code`,
`challenge_test_list`. The sanitized variant's `prompt` / `test_imports` fields are read too.
Splits follow the MBPP paper by task id: prompt 1-10, test 11-510, validation 511-600,
train 601-974. The example test (shown in the prompt) is the first assert.
An invalid JSON line or a row missing a required field is a UserError naming file and line.
"""
from __future__ import annotations

from pathlib import Path

from coderl_jax.data.records import Problem, Tests
from coderl_jax.errors import UserError
from coderl_jax.files import json_lines

MBPP_URL = ("https://raw.githubusercontent.com/google-research/google-research/master/"
            "mbpp/mbpp.jsonl")
SPLITS: dict[str, tuple[int, int]] = {  # inclusive task-id ranges
    "prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
}


def split_of(task_id: int) -> str:
    """The standard MBPP split of a task id ('' outside 1-974)."""
    for name, (lo, hi) in SPLITS.items():
        if lo <= task_id <= hi:
            return name
    return ""


def _str_list(value, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: '{field}' must be a list of strings")
    return tuple(value)


def problem_from_row(row: dict, where: str) -> Problem:
    """One MBPP row → Problem (`where` names file:line in errors)."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    task_id = row.get("task_id")
    if isinstance(task_id, str) and task_id.strip().isdigit():
        task_id = int(task_id)
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise UserError(f"{where}: missing or non-integer 'task_id'")
    text = row.get("text", row.get("prompt"))
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: missing 'text'")
    code = row.get("code")
    if code is not None and not isinstance(code, str):
        raise UserError(f"{where}: 'code' must be a string")
    asserts = _str_list(row.get("test_list"), where, "test_list")
    if not asserts:
        raise UserError(f"{where}: 'test_list' is missing or empty")
    setup = row.get("test_setup_code")
    if setup is None and "test_imports" in row:
        setup = "\n".join(_str_list(row["test_imports"], where, "test_imports"))
    if not isinstance(setup or "", str):
        raise UserError(f"{where}: 'test_setup_code' must be a string")
    setup = setup or ""
    challenge = _str_list(row.get("challenge_test_list"), where, "challenge_test_list")
    return Problem(
        problem_id=str(task_id), question=text, format="assert",
        tests=Tests(asserts=asserts, setup_code=setup),
        example_tests=Tests(asserts=asserts[:1], setup_code=setup),
        challenge_tests=Tests(asserts=challenge, setup_code=setup) if challenge else None,
        solutions=(code,) if code else (), difficulty="unknown", source="mbpp",
        split=split_of(task_id))


def load_mbpp(path: str | Path, split: str | None = None) -> list[Problem]:
    """MBPP problems from a .jsonl file, optionally one split ('train', 'test', 'validation',
    'prompt'), in file order."""
    path = Path(path)
    if split is not None and split not in SPLITS:
        raise UserError(f"unknown MBPP split {split!r}; choose one of {', '.join(SPLITS)}")
    if not path.is_file():
        raise UserError(f"MBPP file not found: {path}")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from e
    with f:
        for lineno, where, row in json_lines(f, path):
            problem = problem_from_row(row, where)
            if problem.problem_id in seen:
                raise UserError(f"{where}: task_id {problem.problem_id} already on line "
                                f"{seen[problem.problem_id]}")
            seen[problem.problem_id] = lineno
            if split is None or problem.split == split:
                problems.append(problem)
    if not seen:
        raise UserError(f"{path}: no MBPP problems in the file (it is empty)")
    return problems

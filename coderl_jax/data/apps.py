"""APPS problems (Hendrycks et al. 2021) from APPS's folder layout → `Problem` records.

A problem folder (`0000/`, ...) holds `question.txt` (required), and optionally
`input_output.json` (`{"inputs": [...], "outputs": [...], "fn_name": "..."}`; with `fn_name` the
tests are call-based), `solutions.json` (a list of programs), `starter_code.py`, `metadata.json`
(`{"difficulty": ...}`) and CodeRL's `example_input_output.json` (example tests). Problems without
tests or solutions are kept (as APPS has them) with empty `tests` / `solutions`.

Bad input: for one problem folder, any unreadable file (missing or empty `question.txt`, invalid
or wrongly shaped JSON) is a `UserError` naming the file. For a split folder the same problems are
skipped and counted, with one warning naming the first few (`strict=True` makes the first one an
error instead), so one damaged problem among 10,000 does not stop a training run. A split
folder in which nothing could be read is an error.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from coderl_jax.data.records import Problem, Tests
from coderl_jax.errors import UserError

log = logging.getLogger(__name__)

# The release CodeRL's README points to (about 1.3 GB unpacked: APPS/train, APPS/test).
APPS_URL = "https://people.eecs.berkeley.edu/~hendrycks/APPS.tar.gz"
class BadProblem(UserError):
    """One APPS problem folder could not be read (the message names the file)."""


def is_problem_dir(path: Path) -> bool:
    """A folder is one APPS problem when it holds question.txt or input_output.json."""
    return (path / "question.txt").is_file() or (path / "input_output.json").is_file()


def _read_text(path: Path, *, required: bool, allow_empty: bool = True) -> str | None:
    if not path.is_file():
        if required:
            raise BadProblem(f"{path}: file not found")
        return None
    try:
        # universal newlines (\r\n -> \n), as APPS's and CodeRL's readers open these files
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise BadProblem(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise BadProblem(f"{path}: cannot read ({e.strerror})") from e
    if not allow_empty and not text.strip():
        raise BadProblem(f"{path}: file is empty")
    return text


def _read_json(path: Path):
    if not path.is_file():
        return None
    text = _read_text(path, required=True)
    if not text.strip():
        raise BadProblem(f"{path}: file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadProblem(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from e


def _tests_from_io(path: Path, data) -> Tests:
    """Tests from an (example_)input_output.json object, checking its shape."""
    if not isinstance(data, dict):
        raise BadProblem(f"{path}: expected a JSON object with 'inputs' and 'outputs'")
    inputs, outputs = data.get("inputs"), data.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise BadProblem(f"{path}: 'inputs' and 'outputs' must both be lists")
    if len(inputs) != len(outputs):
        raise BadProblem(f"{path}: {len(inputs)} inputs but {len(outputs)} outputs")
    fn_name = data.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise BadProblem(f"{path}: 'fn_name' must be a Python identifier, got {fn_name!r}")
    if fn_name:
        for k, args in enumerate(inputs):
            if not isinstance(args, list):
                raise BadProblem(f"{path}: call-based input {k} must be a list of arguments")
    return Tests(inputs=tuple(inputs), outputs=tuple(outputs), fn_name=fn_name or None)


def load_problem(folder: str | Path, *, split: str | None = None,
                 example_tests_dir: str | Path | None = None) -> Problem:
    """One APPS problem folder → Problem; any bad file raises a UserError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadProblem(f"APPS problem folder not found: {folder}")
    question = _read_text(folder / "question.txt", required=True, allow_empty=False)
    io_path = folder / "input_output.json"
    io = _read_json(io_path)
    tests = _tests_from_io(io_path, io) if io is not None else Tests()

    sol_path = folder / "solutions.json"
    sols = _read_json(sol_path)
    if sols is None:
        solutions: tuple[str, ...] = ()
    elif isinstance(sols, list) and all(isinstance(s, str) for s in sols):
        solutions = tuple(sols)
    else:
        raise BadProblem(f"{sol_path}: expected a JSON list of program strings")

    starter = _read_text(folder / "starter_code.py", required=False) or ""

    meta_path = folder / "metadata.json"
    meta = _read_json(meta_path)
    if meta is not None and not isinstance(meta, dict):
        raise BadProblem(f"{meta_path}: expected a JSON object")
    difficulty = str((meta or {}).get("difficulty") or "unknown").strip().lower()

    example = None
    candidates = [folder / "example_input_output.json"]
    if example_tests_dir is not None:
        candidates.append(Path(example_tests_dir) / folder.name / "example_input_output.json")
    for ex_path in candidates:
        ex = _read_json(ex_path)
        if ex is not None:
            example = _tests_from_io(ex_path, ex)
            if example.fn_name is None and tests.fn_name:
                example = Tests(example.inputs, example.outputs, fn_name=tests.fn_name)
            if not len(example):
                example = None
            break

    # Call-based when the tests name a function; else stdin (also for test-less problems,
    # unless starter code says a function is wanted).
    fmt = "call" if tests.fn_name or (io is None and starter.strip()) else "stdin"
    return Problem(
        problem_id=folder.name, question=question, format=fmt, tests=tests,
        starter_code=starter, example_tests=example, solutions=solutions,
        difficulty=difficulty, source="apps",
        split=split if split is not None else folder.parent.name)


def load_apps(path: str | Path, *, strict: bool = False,
              example_tests_dir: str | Path | None = None,
              split: str | None = None) -> list[Problem]:
    """An APPS split folder (or one problem folder) → Problems sorted by folder name.

    `example_tests_dir`: CodeRL's `APPS_test_example_tests/`-style folder whose `<id>/` subfolders
    hold `example_input_output.json` for problems that lack one in their own folder.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"APPS folder not found: {path}")
    if not path.is_dir():
        raise UserError(f"{path}: an APPS source must be a folder (a split or one problem)")
    if is_problem_dir(path):
        return [load_problem(path, split=split, example_tests_dir=example_tests_dir)]
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise UserError(f"{path}: no APPS problem folders inside (expected 0000/, 0001/, ...)")
    if not any(is_problem_dir(d) for d in subdirs):
        names = {d.name for d in subdirs}
        if names & {"train", "test"} or (path / "APPS").is_dir():
            raise UserError(f"{path} is an APPS release folder; pass its train/ or test/ folder "
                            "(or choose a split)")
        if any((d / "example_input_output.json").is_file() for d in subdirs[:20]):
            raise UserError(f"{path} holds only example tests (example_input_output.json); pass "
                            "it as the example-tests folder beside an APPS split folder")
        raise UserError(f"{path}: no APPS problems inside (no question.txt in any subfolder)")
    split_name = split if split is not None else path.name
    problems, bad = [], []
    for d in subdirs:
        try:
            problems.append(load_problem(d, split=split_name, example_tests_dir=example_tests_dir))
        except BadProblem as e:
            if strict:
                raise
            bad.append(str(e))
    if bad:
        shown = "; ".join(bad[:3]) + (f"; ... ({len(bad) - 3} more)" if len(bad) > 3 else "")
        msg = f"{path}: skipped {len(bad)} of {len(subdirs)} APPS problem folders: {shown}"
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
    if not problems:
        raise UserError(f"{path}: none of {len(subdirs)} APPS problem folders could be read: "
                        f"{bad[0]}")
    return problems


def find_split_dirs(root: str | Path) -> dict[str, Path]:
    """`{"train": ..., "test": ...}` under an APPS release root (`APPS/train` or `train`)."""
    root = Path(root)
    found = {}
    for base in (root, root / "APPS"):
        for split in ("train", "test"):
            if (base / split).is_dir() and split not in found:
                found[split] = base / split
    if not found:
        raise UserError(f"{root}: no APPS train/ or test/ folder inside (expected the "
                        f"extracted {os.path.basename(APPS_URL)})")
    return found

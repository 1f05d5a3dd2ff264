"""Program repair for critical sampling: the repair prompt, mining training pairs, the dataset.

The repair prompt is the problem's own CodeRL prompt (SPEC §6, `build_prompt`) with the failing
program and what went wrong appended to the question, so a model warmed up on APPS sees its
familiar frame:

    "\\nQUESTION:\\n" + question
      + "\\n\\n-----Previous Answer-----\\n" + program
      + "\\n\\n-----Outcome-----\\n" + outcome line + error line
      + "\\n\\n-----Task-----\\nFix the previous answer so that it passes the tests.\\n"
      + "\\n" + starter slot + "\\n" + answer type + "\\nANSWER:\\n"

- outcome line: `compile error (syntaxerror)`, `runtime error (nameerror)` or
  `failed tests (failed unit tests)` — SPEC §4's outcome in words and the `error_type`;
- error line: the sandbox's `error_message` (first `max_error_chars` characters, newlines kept),
  followed by `(line N)` when the sandbox reported an `error_line`; absent when there is none;
- the program is cut to its first `max_program_chars` characters (a cut is marked `# ...`).
HumanEval problems carry the block at the end of their prompt text (their question slot).

The repair model is the actor finetuned on (failing program, error) -> fixed program pairs mined
from sampled, executed programs (`mine_repair_pairs`): each failing program is paired with the
passing program of the same problem closest to it (difflib ratio) among the problem's passing
samples and reference solutions. `write_repair_dataset` writes the pairs as an APPS split folder
whose problems' prompts are exactly the repair prompts, so `coderl train` warm-up
(`configs/critical_sampling_repair.py`) trains the repair model with no special data path.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from coderl_jax import paths
from coderl_jax.data import prompts
from coderl_jax.data.prompts import build_prompt
from coderl_jax.data.records import Problem
from coderl_jax.errors import UserError

OUTCOME_WORDS = {-2: "compile error", -1: "runtime error", 0: "failed tests", 1: "passed"}
PROGRAM_HEADER = "\n\n-----Previous Answer-----\n"
OUTCOME_HEADER = "\n\n-----Outcome-----\n"
TASK = "\n\n-----Task-----\nFix the previous answer so that it passes the tests.\n"
CUT_MARK = "\n# ..."


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failing program and what the sandbox said about it (SPEC §3/§4 result fields)."""

    code: str
    result: int
    error_type: str = ""
    error_message: str = ""
    error_line: int | None = None

    @classmethod
    def from_row(cls, row: Mapping, prefix: str = "") -> "Failure":
        """From a result row; `prefix="example_"` reads the example-test fields."""
        line = row.get(prefix + "error_line")
        return cls(code=str(row.get("code") or ""), result=int(row[prefix + "result"]),
                   error_type=str(row.get(prefix + "error_type") or ""),
                   error_message=str(row.get(prefix + "error_message") or ""),
                   error_line=line if isinstance(line, int) and not isinstance(line, bool)
                   else None)


@dataclasses.dataclass(frozen=True)
class RepairFormat:
    """How much of the program and error message the repair prompt holds."""

    max_program_chars: int = 4000
    max_error_chars: int = 500


def repair_block(failure: Failure, fmt: RepairFormat = RepairFormat()) -> str:
    """The text appended to the question (see the module docstring)."""
    program = failure.code.rstrip("\n")
    if len(program) > fmt.max_program_chars:
        program = program[: fmt.max_program_chars] + CUT_MARK
    outcome = OUTCOME_WORDS.get(failure.result, f"outcome {failure.result}")
    if failure.error_type:
        outcome += f" ({failure.error_type})"
    detail = failure.error_message.strip()[: fmt.max_error_chars]
    if failure.error_line is not None:
        detail = (detail + " " if detail else "") + f"(line {failure.error_line})"
    return (PROGRAM_HEADER + program + OUTCOME_HEADER + outcome + ("\n" + detail if detail else "")
            + TASK)


def repair_problem(problem: Problem, failure: Failure,
                   fmt: RepairFormat = RepairFormat()) -> Problem:
    """`problem` with the repair block appended to its question slot."""
    block = repair_block(failure, fmt)
    if problem.prompt_text is not None:  # HumanEval: the prompt is the question slot
        return dataclasses.replace(problem, prompt_text=problem.prompt_text.rstrip("\n") + block)
    return dataclasses.replace(problem, question=problem.question.rstrip("\n") + block)


def repair_prompt(problem: Problem, failure: Failure, fmt: RepairFormat = RepairFormat()) -> str:
    """The repair model's source text for `failure` of `problem`."""
    return build_prompt(repair_problem(problem, failure, fmt))


# ---- training data ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RepairPair:
    """One training example: a failing program of a problem and a program that passes."""

    problem_id: str
    failure: Failure
    fixed_code: str
    fix_origin: str  # "sample" (a passing sampled program) or "solution" (a reference solution)


def mine_repair_pairs(problems_by_id: Mapping[str, Problem], rows: Iterable[Mapping], *,
                      use_samples: bool = True, use_solutions: bool = True,
                      max_pairs_per_problem: int | None = None, seed: int = 0,
                      prefix: str = "") -> list[RepairPair]:
    """(failing program, error) -> fixed program pairs from executed rows (`coderl run-tests`).

    A row fails when its `result` (with `prefix="example_"`: its `example_result`) is not 1.
    Each distinct failing program of a problem is paired with the closest (difflib ratio on the
    text; ties: first) of the problem's distinct passing samples (`use_samples`) and reference
    solutions (`use_solutions`); problems without any passing program give no pairs. With
    `max_pairs_per_problem`, a seeded random subset of each problem's pairs is kept.
    """
    failing: dict[str, dict[str, Failure]] = {}
    passing: dict[str, dict[str, tuple[str, str]]] = {}
    for i, row in enumerate(rows):
        pid = str(row.get("problem_id"))
        if pid not in problems_by_id:
            raise UserError(f"row {i + 1}: problem {pid!r} is not in the problem set")
        if not isinstance(row.get(prefix + "result"), int) or not isinstance(row.get("code"), str):
            raise UserError(f"row {i + 1}: needs 'code' and an integer '{prefix}result' "
                            "(rows written by `coderl run-tests`)")
        code = row["code"]
        if row[prefix + "result"] == 1:
            if use_samples:
                passing.setdefault(pid, {}).setdefault(code.strip(), ("sample", code))
        else:
            failing.setdefault(pid, {}).setdefault(code.strip(), Failure.from_row(row, prefix))
    pairs: list[RepairPair] = []
    rng = random.Random(seed)
    order = {pid: i for i, pid in enumerate(problems_by_id)}
    for pid in sorted(failing, key=order.__getitem__):
        fixes = dict(passing.get(pid, {}))
        if use_solutions:
            for sol in problems_by_id[pid].solutions:
                fixes.setdefault(sol.strip(), ("solution", sol))
        if not fixes:
            continue
        fix_list = list(fixes.values())
        mine = []
        for failure in failing[pid].values():
            best = max(range(len(fix_list)), key=lambda j: (
                difflib.SequenceMatcher(None, failure.code, fix_list[j][1],
                                        autojunk=False).ratio(), -j))
            origin, fixed = fix_list[best]
            mine.append(RepairPair(pid, failure, fixed, origin))
        if max_pairs_per_problem is not None and len(mine) > max_pairs_per_problem:
            mine = [mine[j] for j in sorted(rng.sample(range(len(mine)), max_pairs_per_problem))]
        pairs.extend(mine)
    return pairs


def _starter_slot(problem: Problem) -> tuple[str, str, bool]:
    return prompts._slots(problem)


def write_repair_dataset(pairs: Sequence[RepairPair], problems_by_id: Mapping[str, Problem],
                         out_dir: str | Path, fmt: RepairFormat = RepairFormat()) -> dict:
    """Write `pairs` as an APPS split folder (00000/, ...) whose prompts are the repair prompts.

    Each folder: question.txt (question + repair block), starter_code.py (the prompt's starter
    slot, when not empty), solutions.json ([fixed program]), input_output.json (the original
    tests, stdin/call problems), metadata.json (difficulty, the original problem id, outcome).
    Pairs whose prompt the APPS layout cannot reproduce exactly (Call-Based with an empty starter
    slot: HumanEval) are skipped and counted. The folder is built beside `out_dir` and renamed
    into place. Returns {"written": n, "skipped": m, "path": out_dir}.
    """
    out_dir = paths.absolute(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; give a folder for the repair dataset")
    ours = (out_dir / "repair_pairs.json").is_file()
    if out_dir.exists() and any(out_dir.iterdir()) and not ours:
        raise UserError(f"{out_dir} exists and is not a repair dataset; refusing to replace it")
    # built beside out_dir (for a bucket: in a local temporary folder), then moved there
    if paths.is_remote(out_dir):
        paths.check_bucket(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.writing."))
    else:
        tmp = out_dir.parent / f".{out_dir.name}.writing"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    written = skipped = 0
    width = max(5, len(str(len(pairs))))
    try:
        for pair in pairs:
            problem = repair_problem(problems_by_id[pair.problem_id], pair.failure, fmt)
            question, starter, call_based = _starter_slot(problem)
            if call_based != bool(starter) or "\r" in question + starter:
                skipped += 1
                continue
            folder = tmp / str(written).zfill(width)
            folder.mkdir()
            (folder / "question.txt").write_text(question, encoding="utf-8")
            if starter:
                (folder / "starter_code.py").write_text(starter, encoding="utf-8")
            (folder / "solutions.json").write_text(json.dumps([pair.fixed_code]), encoding="utf-8")
            if problem.format in ("stdin", "call") and len(problem.tests):
                t = problem.tests
                io = {"inputs": list(t.inputs), "outputs": list(t.outputs)}
                if t.fn_name:
                    io["fn_name"] = t.fn_name
                (folder / "input_output.json").write_text(json.dumps(io), encoding="utf-8")
            meta = {"difficulty": problem.difficulty, "repair_of": pair.problem_id,
                    "source": problem.source, "failing_result": pair.failure.result,
                    "fix_origin": pair.fix_origin}
            (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
            written += 1
        (tmp / "repair_pairs.json").write_text(json.dumps(
            {"pairs": written, "skipped": skipped, "format": dataclasses.asdict(fmt)}),
            encoding="utf-8")
        paths.replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"written": written, "skipped": skipped, "path": str(out_dir)}

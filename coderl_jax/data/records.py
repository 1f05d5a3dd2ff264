"""The one problem record every part of the project shares.

A `Problem` holds everything needed to prompt a model for it and to execute a program against it.
Tests come in three formats:
  - "stdin": APPS standard-input problems; `tests.inputs[i]` is fed on stdin and stdout is compared
    with `tests.outputs[i]` (strings, or lists of lines as APPS sometimes stores them).
  - "call":  APPS call-based problems; `tests.fn_name` is called with `*tests.inputs[i]` (a list of
    arguments) and its return value compared with `tests.outputs[i]`.
  - "assert": MBPP / HumanEval; `tests.asserts[i]` is a line of Python run after the program and
    `tests.setup_code` (MBPP `test_setup_code`; HumanEval: the test module defining `check`).
Example tests (CodeRL's `example_input_output.json`, MBPP's first assert, HumanEval's docstring
examples when known) use the same `Tests` shape.
Records round-trip through plain JSON (`to_json` / `from_json`) so they can cross process
boundaries and be stored in TFDS.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

FORMATS = ("stdin", "call", "assert")
DIFFICULTIES = ("introductory", "interview", "competition", "easy", "medium", "hard", "unknown")


@dataclasses.dataclass(frozen=True)
class Tests:
    """Unit tests of one problem in one of the three formats (see module docstring)."""

    inputs: tuple[Any, ...] = ()
    outputs: tuple[Any, ...] = ()
    fn_name: str | None = None
    asserts: tuple[str, ...] = ()
    setup_code: str = ""

    def __len__(self) -> int:
        return len(self.asserts) if self.asserts else len(self.inputs)

    def to_dict(self) -> dict:
        return {"inputs": list(self.inputs), "outputs": list(self.outputs),
                "fn_name": self.fn_name, "asserts": list(self.asserts),
                "setup_code": self.setup_code}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Tests":
        d = d or {}
        return cls(inputs=tuple(d.get("inputs", ())), outputs=tuple(d.get("outputs", ())),
                   fn_name=d.get("fn_name"), asserts=tuple(d.get("asserts", ())),
                   setup_code=d.get("setup_code", ""))


@dataclasses.dataclass(frozen=True)
class Problem:
    """One programming problem: its text, tests, reference solutions and provenance."""

    problem_id: str  # APPS folder name ("0001"), MBPP task_id ("11"), HumanEval task_id
    question: str
    format: str  # one of FORMATS
    tests: Tests
    starter_code: str = ""
    example_tests: Tests | None = None
    solutions: tuple[str, ...] = ()
    difficulty: str = "unknown"
    source: str = ""  # "apps", "mbpp", "humaneval", "demo"
    split: str = ""  # "train", "test", "validation", "heldout", ...
    entry_point: str | None = None  # HumanEval: the function `check` is called with
    prompt_text: str | None = None  # HumanEval: the prompt (signature + docstring)
    challenge_tests: Tests | None = None  # MBPP `challenge_test_list` (harder extra asserts)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"problem {self.problem_id}: unknown format {self.format!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tests"] = self.tests.to_dict()
        d["example_tests"] = self.example_tests.to_dict() if self.example_tests else None
        d["challenge_tests"] = self.challenge_tests.to_dict() if self.challenge_tests else None
        d["solutions"] = list(self.solutions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Problem":
        d = dict(d)
        d["tests"] = Tests.from_dict(d.get("tests"))
        ex = d.get("example_tests")
        d["example_tests"] = Tests.from_dict(ex) if ex else None
        ch = d.get("challenge_tests")
        d["challenge_tests"] = Tests.from_dict(ch) if ch else None
        d["solutions"] = tuple(d.get("solutions", ()))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str | bytes) -> "Problem":
        return cls.from_dict(json.loads(s))

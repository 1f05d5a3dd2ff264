"""The model's source text for a problem (SPEC §6): CodeRL's training format.

CodeRL's training dataset (`datasets/apps_dataset.py`, `sample_task`) builds

    "\\nQUESTION:\\n" + question + "\\n" + starter_code + "\\n" + answer_type + "\\nANSWER:\\n"

with `answer_type` = "\\nUse Call-Based format\\n" when the problem folder has `starter_code.py`
(else "\\nUse Standard Input format\\n", and `starter_code` = ""). Question and starter code are
used verbatim (no stripping). `build_prompt` returns exactly that for APPS (and the demo set).

CodeRL's `generate.py` (inference) builds a slightly different string: no "\\n" between question
and starter code when there is none, the starter code preceded by "\\n", the answer type
without its surrounding newlines, and Call-Based decided by `fn_name` in input_output.json.
`build_prompt(problem, style="generate")` reproduces that one for evaluating released CodeRL
checkpoints exactly as CodeRL did; everything else here uses the training format, so a model is
prompted as it was trained.

MBPP and HumanEval use the same frame, so an APPS-trained model sees a familiar source:
  - MBPP: the problem text as the question and its first test (the example test) where APPS puts
    starter code, Call-Based;
  - HumanEval: the HumanEval prompt (signature + docstring) as the question, Call-Based.
"""
from __future__ import annotations

from typing import Sequence

from coderl_jax.data.records import Problem

QUESTION_HEADER = "\nQUESTION:\n"
ANSWER_HEADER = "\nANSWER:\n"
CALL_BASED = "\nUse Call-Based format\n"
STANDARD_INPUT = "\nUse Standard Input format\n"


def coderl_prompt(question: str, starter_code: str = "", call_based: bool | None = None) -> str:
    """CodeRL's training prompt; Call-Based when `call_based`, by default when starter code is
    given."""
    if call_based is None:
        call_based = bool(starter_code)
    answer_type = CALL_BASED if call_based else STANDARD_INPUT
    return QUESTION_HEADER + question + "\n" + starter_code + "\n" + answer_type + ANSWER_HEADER


def coderl_generate_prompt(question: str, starter_code: str | None, fn_name: str | None,
                           has_tests: bool = True) -> str:
    """CodeRL's `generate.py` prompt (inference-time variant, see module docstring)."""
    text = QUESTION_HEADER + question
    if starter_code is not None:
        text += "\n" + starter_code
    if has_tests:
        text += "\nUse Call-Based format" if fn_name else "\nUse Standard Input format"
    elif starter_code is not None:
        text += "\nUse Call-Based format"
    else:
        text += "\nUse Standard Input format"
    return text + ANSWER_HEADER


def _slots(problem: Problem) -> tuple[str, str, bool]:
    """(question, starter slot, call-based) of a problem, per source (module docstring)."""
    if problem.prompt_text is not None:  # HumanEval
        return problem.prompt_text, "", True
    if problem.format == "assert":  # MBPP and assert-style demo problems
        shown = problem.example_tests.asserts[0] if problem.example_tests and \
            problem.example_tests.asserts else ""
        starter = problem.starter_code + ("\n" if problem.starter_code and shown else "") + shown
        return problem.question, starter, True
    return problem.question, problem.starter_code, bool(problem.starter_code)


def build_prompt(problem: Problem, style: str = "train") -> str:
    """The source text of `problem`: CodeRL's training format (`style="train"`, SPEC §6) or its
    generate.py variant (`style="generate"`)."""
    question, starter, call_based = _slots(problem)
    if style == "train":
        return coderl_prompt(question, starter, call_based)
    if style == "generate":
        if problem.source in ("apps", "demo") and problem.format != "assert":
            return coderl_generate_prompt(
                question, problem.starter_code or None, problem.tests.fn_name,
                has_tests=len(problem.tests) > 0)
        return coderl_generate_prompt(question, starter or None, "f" if call_based else None)
    raise ValueError(f"unknown prompt style {style!r} (train or generate)")


def truncate_prompt(ids: Sequence[int], max_len: int, eos_id: int, plain: bool = False
                    ) -> list[int]:
    """The first `max_len` ids, ending with EOS when cut (HF truncation of `<s> ... </s>`), or
    with `plain` just the first `max_len` (CodeRL's training sources)."""
    ids = list(ids)
    if len(ids) <= max_len:
        return ids
    return ids[:max_len] if plain else ids[: max_len - 1] + [eos_id]


def program_code(problem: Problem, completion: str) -> str:
    """A complete program (SPEC §3): HumanEval prompts are followed by the completion."""
    if problem.source == "humaneval" and problem.prompt_text:
        return problem.prompt_text + completion
    return completion

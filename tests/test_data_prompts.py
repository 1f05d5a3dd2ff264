"""Prompts (SPEC §6): CodeRL's training string, checked character by character on real APPS
problems (standard input and call-based), MBPP and HumanEval."""
import pytest

from coderl_jax.data.apps import load_apps
from coderl_jax.data.humaneval import load_humaneval
from coderl_jax.data.mbpp import load_mbpp
from coderl_jax.data.prompts import build_prompt, coderl_prompt
from coderl_jax.data.records import Problem, Tests as ProblemTests

from conftest import data_path


def assert_same_text(got: str, want: str):
    """Equal strings, else the first differing character and its surroundings."""
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            pytest.fail(f"character {i} differs: got {got[max(0, i - 30):i + 30]!r}, "
                        f"want {want[max(0, i - 30):i + 30]!r}")
    assert len(got) == len(want), f"lengths {len(got)} vs {len(want)}"


def _apps(pid):
    [p] = load_apps(data_path("apps", "train", pid))
    return p


def test_apps_standard_input_prompt():
    p = _apps("0001")
    prompt = build_prompt(p)
    head = ("\nQUESTION:\nMikhail walks on a Cartesian plane. He starts at the point $(0, 0)$, and "
            "in one move he can go to any of eight adjacent points.")
    tail = ("cannot reach the point $(10, 1)$ in 9 moves.\n\n\nUse Standard Input format\n"
            "\nANSWER:\n")
    assert_same_text(prompt[:len(head)], head)
    assert_same_text(prompt[-len(tail):], tail)
    # CodeRL's sample_task on the raw files: "\nQUESTION:\n" + q + "\n" + "" + "\n" + type + ...
    q = (data_path("apps", "train", "0001") / "question.txt").read_text()
    assert_same_text(prompt, "\nQUESTION:\n" + q + "\n\n\nUse Standard Input format\n\nANSWER:\n")


def test_apps_call_based_prompt():
    p = _apps("2404")
    prompt = build_prompt(p)
    head = ("\nQUESTION:\nGiven an array arr\xa0of positive integers\xa0sorted in a strictly "
            "increasing order, and an integer k.\nFind the kth\xa0positive integer that is missing "
            "from this array.\n\xa0\nExample 1:\nInput: arr = [2,3,4,7,11], k = 5\n")
    tail = ("1 <= i < j <= arr.length\nclass Solution:\n    def findKthPositive(self, arr: "
            "List[int], k: int) -> int:\n        \n\nUse Call-Based format\n\nANSWER:\n")
    assert_same_text(prompt[:len(head)], head)
    assert_same_text(prompt[-len(tail):], tail)
    folder = data_path("apps", "train", "2404")
    q, s = (folder / "question.txt").read_text(), (folder / "starter_code.py").read_text()
    assert_same_text(prompt, "\nQUESTION:\n" + q + "\n" + s + "\n\nUse Call-Based format\n"
                     "\nANSWER:\n")


def test_apps_generate_style_prompts():
    """CodeRL's generate.py variant: no blank line before the answer type, none after."""
    p, c = _apps("0001"), _apps("2404")
    assert build_prompt(p, "generate").endswith(
        "in 9 moves.\nUse Standard Input format\nANSWER:\n")
    assert build_prompt(c, "generate").endswith(
        "-> int:\n        \nUse Call-Based format\nANSWER:\n")
    assert build_prompt(c, "generate").startswith("\nQUESTION:\nGiven an array arr")
    with pytest.raises(ValueError):
        build_prompt(p, "other")


def test_starter_code_decides_answer_type():
    """Training format: Call-Based iff the problem has starter code (not iff fn_name)."""
    no_starter = Problem("1", "Q?", "call", ProblemTests(fn_name="f"))
    assert build_prompt(no_starter) == "\nQUESTION:\nQ?\n\n\nUse Standard Input format\n\nANSWER:\n"
    with_starter = Problem("2", "Q?", "stdin", ProblemTests(), starter_code="def f():\n")
    assert build_prompt(with_starter) == \
        "\nQUESTION:\nQ?\ndef f():\n\n\nUse Call-Based format\n\nANSWER:\n"
    assert coderl_prompt("Q?", "", call_based=True) == \
        "\nQUESTION:\nQ?\n\n\nUse Call-Based format\n\nANSWER:\n"


def test_mbpp_prompt_is_text_plus_first_test():
    p = {q.problem_id: q for q in load_mbpp(data_path("mbpp", "mbpp.jsonl"), "test")}["11"]
    want = ("\nQUESTION:\nWrite a python function to remove first and last occurrence of a given "
            "character from the string.\nassert remove_Occ(\"hello\",\"l\") == \"heo\"\n"
            "\nUse Call-Based format\n\nANSWER:\n")
    assert_same_text(build_prompt(p), want)


def test_humaneval_prompt_is_the_prompt():
    p = load_humaneval()[0]
    want = "\nQUESTION:\n" + p.prompt_text + "\n\n\nUse Call-Based format\n\nANSWER:\n"
    assert_same_text(build_prompt(p), want)
    assert build_prompt(p).startswith(
        "\nQUESTION:\nfrom typing import List\n\n\ndef has_close_elements(numbers: List[float], "
        "threshold: float) -> bool:\n")

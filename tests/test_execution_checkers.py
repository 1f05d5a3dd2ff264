"""The judge's comparison rules and the value codec, without sandboxes (fast)."""
import fractions
import math

import numpy as np
import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import codec
from coderl_jax.execution.checkers import (
    apps_call_args,
    apps_call_match,
    apps_stdin_match,
    problem_spec,
    referenced_names,
    subject_names,
)
from coderl_jax.execution.runtime import APPS_PRELUDE, PRELUDE_LINES, wrap_stdin_program


# -- APPS standard input (CodeRL's sequence of checks) ------------------------------------------
@pytest.mark.parametrize("out, expected", [
    ("3\n", "3\n"),
    ("3", "3\n"),  # stripped
    ("  1 2\n3  \n", "1 2\n3"),  # per-line strip
    ("1\n\n2\n", "1\n2\n"),  # empty lines dropped
    ("1\n2\n", ["1", "2"]),  # expected stored as a list of lines
    ("0.3333333\n", "0.33333333\n"),  # float tolerance (numpy.allclose)
    ("2 1\n", "1 2\n"),  # CodeRL compares token sets per line: order inside a line is ignored
    ("b\na\n", "a\nb\n"),  # ... and the order of lines too
    ("1.0004\n", "1.0001\n"),  # rounded to 3 decimals
    ("", ""),
])
def test_stdin_accepts_like_coderl(out, expected):
    assert apps_stdin_match(out, expected)


@pytest.mark.parametrize("out, expected", [
    ("4\n", "3\n"),
    ("", "3\n"),
    ("1 2\n", "1 2 3\n"),
    ("1.01\n", "1.0\n"),
    ("3\n3\n", "3\n4\n"),
    ("yes\n", "YES\n"),
])
def test_stdin_rejects(out, expected):
    assert not apps_stdin_match(out, expected)


# -- APPS call-based ---------------------------------------------------------------------------
def test_call_rules():
    assert apps_call_match(3, 3)
    assert apps_call_match((1, 2), [1, 2])  # tuples count as lists
    assert apps_call_match([1, 2], [[1, 2]])  # expected wrapped in a list
    assert apps_call_match([(1, 2), (3, 4)], [[[1, 2], [3, 4]]])
    assert apps_call_match(True, [True])
    assert not apps_call_match(3, 4)
    assert not apps_call_match([1, 2], [2, 1])
    assert apps_call_match(None, [None, 1])  # CodeRL: a list expected also matches its first item


def test_call_dict_keys_become_ints():
    args, exp = apps_call_args([{"1": "a", "2": "b"}], {"3": 4})
    assert args == [{1: "a", 2: "b"}] and exp == [{3: 4}]
    args, exp = apps_call_args([{"x": 1}, 2], [5])  # non-numeric keys: untouched
    assert args == [{"x": 1}, 2] and exp == [5]


# -- codec ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    None, True, 0, -5, 10 ** 5000, 1.5, -0.0, float("inf"), "é\n", [1, [2, "x"]], (1, (2,)),
    {1, 2}, frozenset({3}), {1: "a", (2, 3): [4]}, 1 + 2j, b"\x00\xff", bytearray(b"ab"),
    range(1, 9, 2), fractions.Fraction(1, 3), [], (), {}], ids=lambda v: type(v).__name__)
def test_codec_roundtrip(value):
    back = codec.decode(codec.encode(value))
    assert back == value and type(back) is type(value)


def test_codec_nan_and_numpy():
    assert math.isnan(codec.decode(codec.encode(float("nan"))))
    arr = codec.decode(codec.encode(np.arange(6, dtype=np.int32).reshape(2, 3)))
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 3) and arr.dtype == np.int32
    assert codec.decode(codec.encode(np.float64(2.5))) == 2.5
    assert type(codec.decode(codec.encode(np.int64(7)))) is int


def test_codec_reads_hostile_subclasses_through_base_slots():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    class BadList(list):
        def __iter__(self):
            return iter([1, 2, 3])

    class BadStr(str):
        def __str__(self):
            return "expected"

    assert codec.decode(codec.encode(Liar(5))) == 5
    assert type(codec.decode(codec.encode(Liar(5)))) is int
    assert codec.decode(codec.encode(BadList([9]))) == [9]
    assert codec.decode(codec.encode(BadStr("real"))) == "real"


def test_codec_opaque_objects_equal_nothing():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    back = codec.decode(codec.encode(AlwaysEqual()))
    assert isinstance(back, codec.Opaque) and back != 5 and back != back.__class__("x")


def test_codec_rejects_bad_payloads():
    for bad in ({"Z": 1}, {"T": 5}, {"a": 1, "b": 2}, {"bt": "eval"}, {"bt": "__import__"},
                {"X": "1e5"}, {"I": 5}):
        with pytest.raises((codec.CodecError, ValueError)):
            codec.decode(bad)


# -- program wrapping and test-code analysis ----------------------------------------------
def test_stdin_wrapping_follows_coderl():
    code = "import sys\nn = int(input())\nimport math\nprint(n)"
    src, line_map = wrap_stdin_program(code)
    lines = src.splitlines()
    assert src.startswith(APPS_PRELUDE)
    body = lines[PRELUDE_LINES:]
    assert body == ["import sys", "stdin = sys.stdin", "stdout = sys.stdout", "def code():",
                    "\tn = int(input())", "\timport math", "\tprint(n)"]
    # every program line maps back to its own number
    for i, text in enumerate(lines, 1):
        if line_map[i] is not None:
            assert text.strip() == code.split("\n")[line_map[i] - 1].strip()
    assert compile(src, "<solution>", "exec")


def test_test_code_names():
    setup = "root = Node(1)\nroot.left = Node(2)\n"
    names = referenced_names(setup + "assert is_tree_balanced(root) == False\nassert sum(x) == 1")
    assert names == ["Node", "is_tree_balanced", "x"]
    assert subject_names(["assert sum(10, 15) == 6"]) == {"sum"}
    # a builtin wrapping the program's call stays the judge's own
    assert subject_names(["assert abs(g(2) - 1.5) < 1e-6"]) == set()
    assert subject_names(["assert int(lobb_num(5, 3)) == 35"]) == set()
    assert "has_close_elements" in subject_names(["check(has_close_elements)"])


def test_problem_spec_keeps_only_what_the_judge_needs():
    p = Problem("1", "q", "assert", Cases(asserts=("assert f(1) == 2",), setup_code=""),
                example_tests=None, solutions=("def f(x): return 2",))
    spec = problem_spec(p)
    assert spec == {"format": "assert", "tests": p.tests.to_dict(), "names": ["f"]}
    with pytest.raises(ValueError, match="no example tests"):
        problem_spec(p, example_tests=True)

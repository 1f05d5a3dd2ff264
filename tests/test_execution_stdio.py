"""Standard-input programs under the two harnesses (runtime.py / checkers.py docstrings).

harness "real" (default): each test runs the program as a process with a real standard input and
output on fds 0/1; its exit status and signals count. harness "coderl": CodeRL's in-process
harness (utils/testing_util.py), quirks included, checked against what its stacked `mock.patch`
decorators really do (`test_coderl_patches_are_what_we_reproduce` runs them).
"""
import io
import sys
from unittest.mock import mock_open, patch

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution.pool import ExecutionPool

# two lines of input; the answer is the sum of the first line, then the second line echoed
TWO = Problem("two", "sum then echo", "stdin",
              Cases(inputs=("1 2\nhello\n", "3 4\nworld\n"), outputs=("3\nhello\n", "7\nworld\n")))
CALL = Problem("c", "add", "call", Cases(inputs=([1, 2],), outputs=(3,), fn_name="add"))
PROBLEMS = {"two": TWO, "c": CALL}
GOOD = "a, b = map(int, input().split())\nprint(a + b)\nprint(input())"


@pytest.fixture(scope="module")
def real():
    with ExecutionPool(workers=1, timeout=1.0, wall_timeout=3.0) as p:
        yield p


@pytest.fixture(scope="module")
def coderl():
    with ExecutionPool(workers=1, timeout=1.0, wall_timeout=3.0, harness="coderl") as p:
        yield p


def outcome(pool, code, pid="two"):
    r = pool.run(PROBLEMS, [{"problem_id": pid, "code": code}])[0]
    return r["result"], r["error_type"]


PASS = (1, "passed unit tests")


@pytest.mark.parametrize("code", [
    GOOD,
    # readline keeps the newline; read() continues from the current position
    "import sys\nline = sys.stdin.readline()\nassert line.endswith('\\n'), repr(line)\n"
    "print(sum(map(int, line.split())))\nprint(sys.stdin.read().strip())",
    "import sys\nprint(sum(map(int, input().split())))\nprint(sys.stdin.read().strip())",
    # iteration, readlines
    "import sys\nfor i, line in enumerate(sys.stdin):\n"
    "    print(sum(map(int, line.split())) if i == 0 else line.strip())",
    "import sys\nls = sys.stdin.readlines()\nprint(sum(map(int, ls[0].split())))\n"
    "print(ls[1].strip())",
    # bytes: sys.stdin.buffer, os.read(0); output: sys.stdout.buffer, os.write(1)
    "import sys\na, b, w = sys.stdin.buffer.read().split()\n"
    "sys.stdout.buffer.write(b'%d\\n%s\\n' % (int(a) + int(b), w))",
    "import os\na, b, w = os.read(0, 1 << 16).split()\n"
    "os.write(1, b'%d\\n%s\\n' % (int(a) + int(b), w))",
    # flushed output survives os._exit(0)
    "import os, sys\n" + GOOD + "\nsys.stdout.flush()\nos._exit(0)",
    # the program is __main__
    "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n    print(input())\n"
    "if __name__ == '__main__':\n    main()",
    # module-level `from sys import stdin` is the real stdin
    "from sys import stdin\nprint(sum(map(int, stdin.readline().split())))\n"
    "print(stdin.readline().strip())",
    # CodeRL's prelude and its wrapper's `stdin` name stay available
    "print(int(np.int64(sum(map(int, stdin.readline().split())))))\nprint(input())",
    # open(0) is the real stdin; open(path) gives the input, as CodeRL's mock_open did
    "a, b, w = open(0).read().split()\nprint(int(a) + int(b))\nprint(w)",
    "a, b, w = open('input.txt').read().split()\nprint(int(a) + int(b))\nprint(w)",
    # work done in a non-daemon thread and output written by an atexit handler count
    "import threading\ndef solve():\n    a, b = map(int, input().split())\n"
    "    print(a + b)\n    print(input())\nthreading.Thread(target=solve).start()",
    "import atexit, io, sys\nbuf = io.StringIO()\nsys.stdout = buf\n"
    "atexit.register(lambda: sys.__stdout__.write(buf.getvalue()))\n" + GOOD,
    # a top-level `return` (legal in CodeRL's `def code():`) ends the program normally
    GOOD + "\nif True:\n    return\nprint('extra')",
    "def f():\n    return 1\n" + GOOD + "\nreturn print(end='')\nprint('extra')",
    # sys.exit(0) / SystemExit(None) after the answer is a normal end
    GOOD + "\nimport sys\nsys.exit(0)",
    GOOD + "\nraise SystemExit",
])
def test_real_harness_passes(real, code):
    assert outcome(real, code) == PASS


@pytest.mark.parametrize("code, expected", [
    # a non-zero exit status after correct output is a runtime error
    ("import os, sys\n" + GOOD + "\nsys.stdout.flush()\nos._exit(3)", (-1, "systemexit")),
    (GOOD + "\nimport sys\nsys.exit(1)", (-1, "systemexit")),
    (GOOD + "\nimport sys\nsys.exit('bye')", (-1, "systemexit")),
    # killed by a signal after printing the answer
    ("import ctypes, sys\n" + GOOD + "\nsys.stdout.flush()\nctypes.string_at(0)", (-1, "sigsegv")),
    # an uncaught exception after the answer
    (GOOD + "\nraise ValueError('late')", (-1, "valueerror")),
    ("a = input(\n", (-2, "syntaxerror")),
    # a leading import line failing is CodeRL's load phase: -2; the same import later is -1
    ("import no_such_module_xyz\n" + GOOD, (-2, "modulenotfounderror")),
    (GOOD + "\nimport no_such_module_xyz", (-1, "modulenotfounderror")),
    ("import sys\nsys.exit(0)\n" + GOOD, (0, "failed unit tests")),
    ("import os\nos._exit(0)", (0, "failed unit tests")),
    ("print(input())\nprint(input())\nprint(input())", (-1, "eoferror")),
    # output beyond the cap (or the file-size limit) is a failed test
    ("for _ in range(20000):\n    print('x' * 1000)", (0, "failed unit tests")),
    ("while True:\n    print('x' * 1000)", (0, "failed unit tests")),
    ("while True:\n    pass", (-1, "timeoutexception")),
])
def test_real_harness_failures(real, code, expected):
    assert outcome(real, code) == expected


def test_real_harness_error_lines_and_every_test_in_its_own_process(real):
    r = real.run(PROBLEMS, [{"problem_id": "two", "code": GOOD + "\n\nx = [1][5]"}])[0]
    assert (r["result"], r["error_line"]) == (-1, 5) and r["error_message"].startswith("IndexError")
    # state does not carry over between tests: each is a fresh process
    code = "import os\nif os.path.exists('seen'):\n    print('again')\nopen('seen', 'w')\n" + GOOD
    code = code.replace("open('seen', 'w')", "import io\nio.open('seen', 'w').close()")
    r = real.run(PROBLEMS, [{"problem_id": "two", "code": code}])[0]
    assert r["result"] == 1 and r["tests"] == [1, 1], r
    # call-based programs are not __main__ (their `if __name__` blocks often read stdin)
    code = ("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n"
            "    print(add(*map(int, input().split())))")
    assert outcome(real, code, "c") == PASS


@pytest.mark.parametrize("code, expected", [
    (GOOD, PASS),
    # top-level names are locals of code(): UnboundLocalError; `return` at top level is legal
    ("a, b = map(int, input().split())\nprint(a + b)\nprint(y)\ny = 1", (-1, "unboundlocalerror")),
    (GOOD + "\nreturn\nprint('extra')", PASS),
    # inside code() sys.stdin is a plain StringIO: newline kept, one shared position
    ("import sys\nline = sys.stdin.readline()\nassert line == '1 2\\n' or line == '3 4\\n', line\n"
     "print(sum(map(int, line.split())))\nprint(sys.stdin.read().strip())", PASS),
    ("import sys\nprint(sum(map(int, input().split())))\nprint(sys.stdin.read().strip())", PASS),
    ("import sys\nsys.stdin.buffer.read()", (-1, "attributeerror")),
    # names bound at import hold the original stdin with CodeRL's patches: readline without the
    # newline (StopIteration at the end), read() the whole input
    ("from sys import stdin\nline = stdin.readline()\nassert not line.endswith('\\n')\n"
     "print(sum(map(int, line.split())))\nprint(stdin.readline())", PASS),
    ("from sys import stdin\nprint(sum(map(int, stdin.readline().split())))\n"
     "print(stdin.read().split()[2])",
     PASS),
    ("from sys import stdin\nfor _ in range(4):\n    stdin.readline()", (-1, "stopiteration")),
    ("print(sum(map(int, stdin.readline().split())))\nprint(stdin.readline())", PASS),  # wrapper's
    # ... and the original stdout, whose output is lost
    ("from sys import stdout\na, b = map(int, input().split())\n"
     "stdout.write(f'{a + b}\\n{input()}\\n')",
     (0, "failed unit tests")),
    # SystemExit is swallowed; output before os._exit is lost; __name__ is not __main__
    (GOOD + "\nimport sys\nsys.exit(1)", PASS),
    ("import sys\nsys.exit(0)\n" + GOOD, (0, "failed unit tests")),
    ("import os, sys\n" + GOOD + "\nsys.stdout.flush()\nos._exit(0)", (0, "failed unit tests")),
    ("def main():\n    print(1)\nif __name__ == '__main__':\n    main()", (0, "failed unit tests")),
    ("import sys\nsys.stdout.buffer.write(b'3')", (-1, "attributeerror")),
    ("import sys\n" + GOOD + "\nsys.stdout.close()", (-1, "typeerror")),
    # open(...) returns the input (mock_open)
    ("a, b, w = open(0).read().split()\nprint(int(a) + int(b))\nprint(w)", PASS),
    ("while True:\n    print('x' * 1000)", (-1, "timeoutexception")),
])
def test_coderl_harness(coderl, code, expected):
    assert outcome(coderl, code) == expected


def test_coderl_patches_are_what_we_reproduce():
    """CodeRL's call_method, verbatim: patches applied bottom-up, so readline/readlines/read are
    patched on the original sys.stdin, which is then replaced by a fresh StringIO."""
    inputs = "1 2\nhello\n"
    inputs_line_iterator = iter(inputs.split("\n"))
    original = io.StringIO("")
    seen = {}
    with patch("sys.stdin", original):
        @patch('builtins.open', mock_open(read_data=inputs))
        @patch('sys.stdin', io.StringIO(inputs))
        @patch('sys.stdin.readline', lambda *args: next(inputs_line_iterator))  # noqa: ARG005
        @patch('sys.stdin.readlines', lambda *args: inputs.split("\n"))  # noqa: ARG005
        @patch('sys.stdin.read', lambda *args: inputs)  # noqa: ARG005 (verbatim)
        def inner():
            seen["type"] = type(sys.stdin)
            seen["lines"] = (sys.stdin.readline(), input(), sys.stdin.read())
            seen["original"] = (original.readline(), original.readline(), original.read())
            seen["open"] = open("anything").read()

        inner()
    assert seen["type"] is io.StringIO
    assert seen["lines"] == ("1 2\n", "hello", "")
    assert seen["original"] == ("1 2", "hello", inputs)
    assert seen["open"] == inputs


def test_harness_is_validated():
    with pytest.raises(ValueError, match="harness"):
        ExecutionPool(workers=1, harness="python")


def test_run_tests_has_a_harness_option():
    import argparse

    from coderl_jax.commands import run_tests

    parser = argparse.ArgumentParser()
    run_tests.register(parser.add_subparsers())
    base = ["run-tests", "--problems", "demo", "--programs", "in.jsonl", "--out", "o.jsonl"]
    assert parser.parse_args(base).harness == "real"
    assert parser.parse_args(base + ["--harness", "coderl"]).harness == "coderl"
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--harness", "python"])

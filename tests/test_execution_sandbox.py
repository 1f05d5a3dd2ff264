"""Outcome codes and APPS/CodeRL semantics through real sandboxes, and the pool's APIs."""
import concurrent.futures
import os
import time

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import run_program
from coderl_jax.execution.pool import ExecutionPool

STDIN = Problem("s", "add two numbers", "stdin",
                Cases(inputs=("1 2\n", "3 4\n", "10 -3\n"), outputs=("3\n", "7\n", "7\n")),
                example_tests=Cases(inputs=("1 2\n",), outputs=("3\n",)))
CALL = Problem("c", "add", "call", Cases(inputs=([1, 2], [3, 4]), outputs=(3, 7), fn_name="add"),
               starter_code="def add(a, b):")
PAIRS = Problem("p", "pairs", "call", Cases(inputs=([2],), outputs=([[[0, 1], [1, 2]]],),
                                            fn_name="pairs"))
MBPP = Problem("m", "add", "assert", Cases(asserts=("assert add(1, 2) == 3",
                                                    "assert add(3, 4) == 7",
                                                    "assert add(0, 0) == 0")),
               example_tests=Cases(asserts=("assert add(1, 2) == 3",)))
TREE = Problem("t", "tree height", "assert", Cases(
    setup_code="root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)\n",
    asserts=("assert height(root) == 3", "assert height(None) == 0")))
HUMANEVAL = Problem("h", "inc", "assert", Cases(
    setup_code="def check(candidate):\n    assert candidate([1, 2]) == [2, 3]\n"
               "    assert abs(half(3) - 1.5) < 1e-9\n",
    asserts=("check(incr_list)",)), entry_point="incr_list")
PROBLEMS = {p.problem_id: p for p in (STDIN, CALL, PAIRS, MBPP, TREE, HUMANEVAL)}

ADD_STDIN = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.fixture(scope="module")
def pool():
    with ExecutionPool(workers=2, timeout=0.5, wall_timeout=2.0) as p:
        yield p


def run(pool, pid, code, **kw):
    return pool.run(PROBLEMS, [{"problem_id": pid, "code": code}], **kw)[0]


def test_result_dict_shape(pool):
    r = run(pool, "s", ADD_STDIN)
    assert set(r) == {"result", "error_type", "tests", "seconds", "error_message", "error_line"}
    assert r["result"] == 1 and r["error_type"] == "passed unit tests" and r["tests"] == [1, 1, 1]
    assert 0 < r["seconds"] < 5 and r["error_message"] == "" and r["error_line"] is None


@pytest.mark.parametrize("pid, code, result, etype, tests", [
    # standard input
    ("s", ADD_STDIN, 1, "passed unit tests", [1, 1, 1]),
    ("s", "a, b = map(int, input().split())\nprint(a - b)", 0, "failed unit tests", [0]),
    ("s", "a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)", 0,
     "failed unit tests", [1, 1, 0]),
    ("s", "a, b = map(int, input().split()\nprint(a + b)", -2, "syntaxerror", [-2]),
    ("s", "print(1 / 0)", -1, "zerodivisionerror", [-1]),
    ("s", "while True:\n    pass", -1, "timeoutexception", [-1]),
    ("s", "import time\ntime.sleep(60)", -1, "timeoutexception", [-1]),
    ("s", "n = input()\nm = input()", -1, "eoferror", [-1]),  # readline gives "" at the end
    # call-based
    ("c", "def add(a, b):\n    return a + b", 1, "passed unit tests", [1, 1]),
    ("c", "class Solution:\n    def add(self, a, b):\n        return a + b", 1,
     "passed unit tests", [1, 1]),
    ("c", "def add(a, b):\n    return a * b", 0, "failed unit tests", [0]),
    ("c", "def add(a, b):\n    return [a][b]", -1, "indexerror", [-1]),
    ("c", "def plus(a, b):\n    return a + b", -1, "attributeerror", [-1]),
    ("c", "x = undefined_name\ndef add(a, b):\n    return a + b", -2, "nameerror", [-2]),
    ("c", "def add(a, b)\n    return a + b", -2, "syntaxerror", [-2]),
    ("c", "def add(a, b):\n    while True:\n        pass", -1, "timeoutexception", [-1]),
    ("c", "while True:\n    pass", -2, "timeoutexception", [-2]),  # at import: CodeRL's -2
    ("p", "def pairs(n):\n    return [(i, i + 1) for i in range(n)]", 1, "passed unit tests",
     [1]),  # tuples inside the list count as lists
    # MBPP-style asserts
    ("m", "def add(a, b):\n    return a + b", 1, "passed unit tests", [1, 1, 1]),
    ("m", "def add(a, b):\n    return a + b + (a == 3)", 0, "failed unit tests", [1, 0]),
    ("m", "def add(a, b):\n    return a + c", -1, "nameerror", [-1]),
    ("m", "def add(a, b):\n    return (a + b,)", 0, "failed unit tests", [0]),  # tuple != int
    ("m", "def add(a, b):\nreturn a + b", -2, "indentationerror", [-2]),
    ("m", "def add(a, b):\n    while True:\n        pass", -1, "timeoutexception", [-1]),
    ("m", "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b", 0, "failed unit tests",
     [0]),  # exits before it can answer: failed (SPEC §4)
    ("m", "import sys\nsys.exit('bye')", -1, "systemexit", [-1]),
    ("m", "import os\nos._exit(0)", 0, "failed unit tests", [0]),
    ("t", "class Node:\n    def __init__(self, v):\n        self.v, self.left, self.right = v, "
          "None, None\ndef height(n):\n    return 0 if n is None else 1 + max(height(n.left), "
          "height(n.right))", 1, "passed unit tests", [1, 1]),
    ("h", "def incr_list(l):\n    return [x + 1 for x in l]\ndef half(x):\n    return x / 2", 1,
     "passed unit tests", [1]),
    ("h", "def incr_list(l):\n    return [x + 1 for x in l]\ndef half(x):\n    return x // 2", 0,
     "failed unit tests", [0]),
    ("h", "def incr_list(l):\n    return [x + 1 for x in l]", -1, "nameerror", [-1]),
])
def test_outcomes(pool, pid, code, result, etype, tests):
    r = run(pool, pid, code)
    assert (r["result"], r["error_type"], r["tests"]) == (result, etype, tests), r


def test_error_message_and_line_point_into_the_program(pool):
    r = run(pool, "s", "a, b = map(int, input().split())\n\nprint(a + b)\nx = [1][5]")
    assert r["error_line"] == 4 and r["error_message"].startswith("IndexError:")
    r = run(pool, "s", "x = 1\ny = (\n")
    assert r["result"] == -2 and r["error_line"] in (2, 3)
    r = run(pool, "c", "def add(a, b):\n    c = a\n    return c / 0")
    assert r["error_line"] == 3 and "ZeroDivisionError" in r["error_message"]
    r = run(pool, "m", "\n\ndef add(a, b):\n    return {}[a]")
    assert (r["error_type"], r["error_line"]) == ("keyerror", 4)


def test_stop_at_first_failure_option(pool):
    code = "a, b = map(int, input().split())\nprint(a + b if a != 1 else 0)"
    assert run(pool, "s", code)["tests"] == [0]
    r = run(pool, "s", code, stop_at_first_failure=False)
    assert r["tests"] == [0, 1, 1] and r["result"] == 0
    # after a timeout a fresh sandbox runs the remaining tests
    code = "a, b = map(int, input().split())\nwhile a == 3:\n    pass\nprint(a + b)"
    r = run(pool, "s", code, stop_at_first_failure=False)
    assert r["tests"] == [1, -1, 1] and r["error_type"] == "timeoutexception"


def test_example_tests_only(pool):
    code = "a, b = map(int, input().split())\nprint(a + b if a == 1 else 0)"
    assert run(pool, "s", code)["result"] == 0
    r = run(pool, "s", code, example_tests=True)
    assert r["result"] == 1 and r["tests"] == [1]
    r = run(pool, "m", "def add(a, b):\n    return 3", example_tests=True)
    assert r["tests"] == [1]
    with pytest.raises(ValueError, match="no example tests"):
        run(pool, "c", "def add(a, b):\n    return a + b", example_tests=True)


def test_cache_runs_identical_programs_once(pool):
    code = "def add(a, b):\n    return a + b  # cache test\n"
    hits = pool.cache_hits
    rows = [{"problem_id": "m", "code": code}, {"problem_id": "m", "code": code + "\n\n"},
            {"problem_id": "m", "code": code.replace("\n", "\r\n")},
            {"problem_id": "c", "code": code}]
    res = pool.run(PROBLEMS, rows)
    assert [r["result"] for r in res] == [1, 1, 1, 1]
    assert pool.cache_hits == hits + 2  # the two variants of the first; "c" is another problem
    again = pool.run(PROBLEMS, rows[:1])
    assert again == res[:1] and pool.cache_hits == hits + 3
    res[0]["tests"].append(99)  # results handed out are copies
    assert pool.run(PROBLEMS, rows[:1])[0]["tests"] == [1, 1, 1]


def test_async_submit_returns_a_future(pool):
    rows = [{"problem_id": "s", "code": ADD_STDIN + f"\n# {i}"} for i in range(6)]
    rows.append({"problem_id": "s", "code": "while True:\n    pass\n# async"})
    t0 = time.monotonic()
    fut = pool.submit(PROBLEMS, rows)
    assert isinstance(fut, concurrent.futures.Future)
    assert time.monotonic() - t0 < 0.5  # returned before the looping program's timeout
    res = fut.result(timeout=60)
    assert [r["result"] for r in res] == [1] * 6 + [-1]
    with pytest.raises(KeyError):
        pool.submit(PROBLEMS, [{"problem_id": "nope", "code": ""}])


def test_workers_are_recycled_and_restarted():
    with ExecutionPool(workers=1, timeout=1.0, max_jobs_per_worker=2, cache_size=0) as pool:
        rows = [{"problem_id": "s", "code": ADD_STDIN + f"\n# {i}"} for i in range(5)]
        assert [r["result"] for r in pool.run(PROBLEMS, rows)] == [1] * 5
        worker = pool._workers[0]
        first = worker.proc.pid
        worker.proc.kill()  # an anomaly: the worker dies between jobs
        worker.proc.wait()
        assert pool.run_one(STDIN, ADD_STDIN)["result"] == 1
        assert worker.proc.pid != first


def test_run_program_convenience():
    assert run_program(MBPP, "def add(a, b):\n    return a + b", timeout=1.0)["result"] == 1


def test_basic_isolation_fallback_still_kills_daemons(tmp_path):
    """Without namespaces (non-root machines) the fork server is a subreaper and sweeps up
    double-forked, setsid() daemons after each program."""
    pidfile = tmp_path / "daemon.pid"
    code = ("import io, os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        io.open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
            "        while True:\n            time.sleep(0.05)\n    os._exit(0)\n"
            "time.sleep(0.3)\n" + ADD_STDIN)
    with ExecutionPool(workers=1, timeout=1.0, isolation="basic") as pool:
        r = pool.run_one(STDIN, code)
        assert pool.namespaces is False
        assert r["result"] == 1, r
        pid = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert pool.run_one(STDIN, "while True:\n    pass")["error_type"] == "timeoutexception"


def _scratch_folders(worker_pid: int) -> set[str]:
    import glob
    import tempfile

    return {f for d in {tempfile.gettempdir(), "/tmp"}
            for f in glob.glob(os.path.join(d, f"coderl-sandbox-{worker_pid}-*"))}


def test_basic_isolation_leaves_no_scratch_folders():
    """Mode "basic" gives each program a fresh temp folder: every one is removed, whether its
    sandbox was reaped, still waiting as the spare when the pool closed, or its worker killed."""
    writer = ("import os\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\n"
              "os.chmod('a/b', 0o500)\ndef add(a, b):\n    return a + b")
    pool = ExecutionPool(workers=1, timeout=1.0, isolation="basic", cache_size=0)
    try:
        results = pool.run(PROBLEMS, [{"problem_id": "m", "code": writer},
                                      {"problem_id": "s", "code": ADD_STDIN}])
        assert [r["result"] for r in results] == [1, 1], results
        pid = pool._workers[0].proc.pid
        assert len(_scratch_folders(pid)) == 1  # the worker's, holding its sandboxes' folders
    finally:
        pool.close()
    assert _scratch_folders(pid) == set()

    killed = ExecutionPool(workers=1, timeout=1.0, isolation="basic")
    assert killed.run_one(MBPP, writer)["result"] == 1
    proc = killed._workers[0].proc
    proc.kill()  # no clean-up runs: the next worker to start removes what it left
    proc.wait()
    assert len(_scratch_folders(proc.pid)) == 1
    killed.close()
    with ExecutionPool(workers=1, timeout=1.0, isolation="basic") as fresh:
        assert fresh.run_one(MBPP, "def add(a, b):\n    return a + b")["result"] == 1
        assert _scratch_folders(proc.pid) == set()
        pid = fresh._workers[0].proc.pid
    assert _scratch_folders(pid) == set()


def test_workers_never_import_jax(pool):
    pool.run(PROBLEMS, [{"problem_id": "s", "code": ADD_STDIN + f"\n# jax {i}"} for i in range(4)])
    started = [w for w in pool._workers if w.proc is not None]
    assert started
    for w in started:
        with open(f"/proc/{w.proc.pid}/maps") as f:
            maps = f.read()
        assert "numpy" in maps  # pre-imported for the programs (the check can see imports)
        assert "jaxlib" not in maps and "/jax/" not in maps


def test_close_shuts_workers_down_cleanly():
    pool = ExecutionPool(workers=1, timeout=1.0)
    assert pool.run_one(STDIN, ADD_STDIN)["result"] == 1
    proc = pool._workers[0].proc
    pool.close()
    assert proc.returncode == 0  # exited on its own (fork server and cgroup removed), not killed
    with pytest.raises(RuntimeError):
        pool.submit(PROBLEMS, [])

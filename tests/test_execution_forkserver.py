"""The fork server's fast path keeps programs' semantics: its warm-up leaves nothing behind,
programs get their own garbage collector, and spawn requests follow the limits asked for."""
import builtins
import os
import sys
import time

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import runtime, sandbox
from coderl_jax.execution.pool import ExecutionPool


def test_warm_up_leaves_nothing_behind():
    runtime.preload()  # as in the fork server, and the prelude's imports, once
    runtime.warm_up(rounds=2)
    streams = sys.stdin, sys.stdout, sys.stderr, builtins.open
    fds = set(os.listdir("/proc/self/fd"))
    modules = set(sys.modules)
    runtime.warm_up(rounds=4)
    assert (sys.stdin, sys.stdout, sys.stderr, builtins.open) == streams
    assert set(os.listdir("/proc/self/fd")) == fds
    assert set(sys.modules) - modules == set()
    assert "solution" not in sys.modules and "tmp_sol" not in sys.modules


GC = Problem("g", "gc", "assert", Cases(asserts=("assert collects() == (True, True)",)))
GC_PROGRAM = """
import gc
import weakref

class Node:
    pass

def collects():
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    return gc.isenabled(), gone() is None
"""


def test_programs_have_an_enabled_collector_of_their_own():
    """The fork server runs without automatic collection; each program has it back."""
    with ExecutionPool(workers=1, timeout=2.0, cache_size=0) as pool:
        for _ in range(2):
            r = pool.run({"g": GC}, [{"problem_id": "g", "code": GC_PROGRAM}])[0]
            assert r["result"] == 1, r


def _nofile(zygote, limits) -> int:
    """RLIMIT_NOFILE as a program in a sandbox with `limits` sees it."""
    sb = zygote.spawn(limits)
    try:
        code = "import resource\nv = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        sb.send({"kind": "module", "code": code, "names": ["v"]})
        reply = sb.recv(sb.start_budget(), 5.0, time.monotonic() + 20)
        return reply["names"]["v"]["v"]
    finally:
        sb.kill()


def test_spawns_follow_the_limits_of_each_request():
    """The fork server parses a spawn request only when it differs from the last one, and the
    worker encodes each Limits once: a change of limits must still reach the next sandbox."""
    zygote = sandbox.Zygote(sandbox.namespaces_available())
    try:
        seen = [_nofile(zygote, sandbox.Limits(nofile=n)) for n in (64, 64, 50, 50, 64, 40)]
    finally:
        zygote.close()
    assert seen == [64, 64, 50, 50, 64, 40]


def test_close_ends_every_worker():
    """close() hangs up on all workers at once, then waits for each."""
    pool = ExecutionPool(workers=2, timeout=2.0, cache_size=0)
    rows = [{"problem_id": "g", "code": GC_PROGRAM}] * 4
    assert [r["result"] for r in pool.run({"g": GC}, rows)] == [1] * 4
    procs = [w.proc for w in pool._workers if w.proc is not None]
    assert procs
    pool.close()
    assert all(p.returncode is not None for p in procs)
    assert all(w.proc is None for w in pool._workers)

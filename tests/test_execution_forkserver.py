"""The fast path keeps programs' semantics: the fork server's warm-up leaves nothing behind,
programs get their own garbage collector, spawn requests follow the limits asked for, and
workers bound to a CPU run their programs there."""
import builtins
import os
import sys
import time

import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import runtime, sandbox
from coderl_jax.execution.pool import ExecutionPool, worker_cpus


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


def test_worker_cpus_bind_each_worker_to_one_allowed_cpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {5, 3})
    assert worker_cpus(2, None) == [3, 5]
    assert worker_cpus(1, None) == [3]
    assert worker_cpus(3, None) == [None] * 3  # more workers than CPUs: left to the kernel
    assert worker_cpus(3, True) == [3, 5, 3]
    assert worker_cpus(2, False) == [None, None]
    with pytest.raises(ValueError, match="pin_cpus"):
        ExecutionPool(workers=1, pin_cpus="yes")


AFFINITY = Problem("a", "cpus", "assert", Cases(asserts=("assert cpus() == expected",)))


@pytest.mark.parametrize("pin", [True, False])
def test_a_bound_worker_runs_its_programs_on_its_cpu(pin):
    allowed = sorted(os.sched_getaffinity(0))
    expected = allowed[:1] if pin else allowed
    code = ("import os\nexpected = %r\ndef cpus():\n    return sorted(os.sched_getaffinity(0))\n"
            % expected)
    with ExecutionPool(workers=1, timeout=2.0, cache_size=0, pin_cpus=pin) as pool:
        r = pool.run({"a": AFFINITY}, [{"problem_id": "a", "code": code}])[0]
    assert r["result"] == 1, r

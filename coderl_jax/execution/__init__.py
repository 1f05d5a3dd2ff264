"""Sandboxed execution of programs against unit tests (SPEC §3-§4).

`ExecutionPool` (pool.py) is the main entry point; `run_program` runs one program with a
short-lived pool. Modules: sandbox.py (isolation, fork server), rootfs.py (the allow-listed
filesystem), cgroups.py (CPU accounting, memory, pids), seccomp.py (the system-call filter),
syscalls.py (ctypes wrappers), runtime.py (what runs inside a sandbox), checkers.py (the judge:
APPS / MBPP / HumanEval semantics), worker.py (a pool worker process), codec.py (typed JSON
across the boundary).

Threat model. Programs are adversarial: RL optimises against the verdict, so any way to pass
without solving the problem, to carry information between programs, or to reach the host will be
found. Defended (mode "namespaces", as root; sandbox.py says how each is obtained):
  * reward hacking through the host: no test data, checkout or dataset is in the program's
    filesystem (an allow-list, for every API that starts a pool); expected outputs never enter
    its process; nothing survives it (IPC, /tmp, /dev/shm, processes) for a later sample;
  * reward hacking through the judge: forged, huge, deep or hash-colliding replies are bounded
    and become -1; comparisons use the judge's own builtins and modules on plain values;
  * programs judged at the same time (on different workers): each has its own PID, IPC, mount and
    network namespaces (abstract sockets, System V/POSIX IPC, /tmp, /dev/shm), uid and cgroups, and
    the kernel state attachable to the files they all share (interpreter, standard library,
    /dev/null) is refused by seccomp: file locks (flock, fcntl record and OFD locks: ENOLCK, also
    on a program's own files, so sqlite3 works in memory only), leases, dnotify and inotify
    (EPERM), process-shared futexes (keyed by a mapped file's inode: waits return EAGAIN, wakes
    wake nobody), page-cache probes (preadv2 RWF_NOWAIT, cachestat, Linux AIO), vsock sockets (not
    per network namespace; only unix, inet, inet6 and netlink sockets can be made); /dev is bound
    read-only, so no `utime` on the shared device nodes; read-only mounts update no access times
    and take no xattrs;
  * the host: no terminal, no launcher environment or keyring, no host /proc, no network (no
    vsock either), no writable host path, no new namespaces/mounts/ptrace/bpf/io_uring
    (seccomp), bounded CPU (cgroup, every process ever created), wall time (one budget per
    program), memory, processes, files and output;
  * the harness: the judge survives any reply (a failure is that program's -1, never cached);
    a fork server or worker that dies is restarted and the program retried once.
Not defended: kernel bugs reachable through the system calls the filter allows (it refuses
dangerous interfaces; it is not an allow-list of calls); timing side channels and reading host-wide
facts such as /proc/cpuinfo or the kernel version, including counters that one program moves by its
own use and another reads through the host's noise (/proc/loadavg, /proc/meminfo,
/proc/sys/fs/file-nr), and the page cache through read times; signals a program sends itself with
their default action (it is PID 1 of its namespace, and init ignores those; faults and the judge's
kill still end it); HumanEval prompts that define helper functions the tests call (a program may
redefine them: a weakness of the benchmark, not of the sandbox); anything in mode "basic" (not
root: limits, seccomp and the minimal environment only, logged as a warning).

Outcome semantics, in short (details in checkers.py and runtime.py):
  * APPS programs get CodeRL's import prelude and comparison sequence (stripped text, lines,
    floats with numpy.allclose, token sets); call-based programs run in-process as module
    `tmp_sol` (`class Solution` handled as CodeRL does).
  * Standard-input programs run under one of two harnesses (`ExecutionPool(harness=...)`,
    `coderl run-tests --harness`):
      - "real" (default): each test runs the program as a process, as contest judges do: real
        stdin/stdout on fds 0/1 (`readline` keeps the newline, `read` continues, `.buffer`,
        `os.read(0)`, `os.write(1)` and output before `os._exit(0)` all work), module
        `__main__`; a non-zero exit status or death by a signal is -1, output over the cap a
        failed test. Kept from CodeRL because programs trained under it rely on them: the
        prelude, the wrapper's `stdin`/`stdout` names, a top-level `return` (ends the program),
        `open(path)` reading the input, -2 for a syntax error or a failing leading import line.
      - "coderl": CodeRL's in-process harness reproduced case by case: `def code():` wrapping
        (UnboundLocalError for late top-level names), `sys.stdin` a plain StringIO inside
        `code()`, names bound at import (`from sys import stdin`) the original stdin with
        CodeRL's patched `readline` (no newline) / `readlines` / `read`, output written to the
        original stdout (`from sys import stdout`) or before `os._exit` lost, `SystemExit`
        swallowed, module name `tmp_sol`, no `sys.stdin.buffer`, -2 for anything raised while
        the module loads.
  * Not CodeRL's, in both harnesses (CodeRL could not label these): a call-based program
    without the named function gets -1 "attributeerror" (CodeRL's run_test raised and the
    program got no result); exiting while the module loads is judged like exiting in a test
    (status 0: failed, else "systemexit"; CodeRL's evaluation process itself exited); time
    limits are CPU seconds of the program's whole process tree (4 s per test by default, as
    APPS) with a wall-clock limit for programs that sleep or block, where CodeRL used a 4 s
    wall-clock `signal.alarm`.
  * MBPP/HumanEval test code runs in the judge against proxies of the program's functions, so the
    comparisons use real builtins on plain values (no `__eq__` tricks, no monkeypatching).
"""
from __future__ import annotations


def run_program(problem, code: str, *, timeout: float = 4.0, example_tests: bool = False,
                stop_at_first_failure: bool = True, **pool_kwargs) -> dict:
    """Execute one program against `problem`'s tests in a one-worker pool; returns its result
    dict ({"result", "error_type", "tests", "seconds", "error_message", "error_line"})."""
    from coderl_jax.execution.pool import ExecutionPool

    with ExecutionPool(workers=1, timeout=timeout, **pool_kwargs) as pool:
        return pool.run_one(problem, code, example_tests=example_tests,
                            stop_at_first_failure=stop_at_first_failure)


def __getattr__(name):
    if name == "ExecutionPool":
        from coderl_jax.execution.pool import ExecutionPool

        return ExecutionPool
    raise AttributeError(name)

"""Sandboxed execution of programs against unit tests (SPEC §3-§4).

`ExecutionPool` (pool.py) is the main entry point; `run_program` runs one program with a
short-lived pool. Modules: sandbox.py (isolation, fork server), runtime.py (what runs inside a
sandbox), checkers.py (the judge: APPS / MBPP / HumanEval semantics), worker.py (a pool worker
process), codec.py (typed JSON across the boundary).

Outcome semantics, in short (details in checkers.py and runtime.py):
  * APPS follows CodeRL's harness (utils/testing_util.py): its import prelude, standard-input
    programs wrapped in `def code():` (so e.g. a top-level name read before assignment is an
    UnboundLocalError, and `return` at top level is legal), `sys.stdin.readline` without the
    newline, `open()` reading the input, `SystemExit` ending a test normally, module name not
    `__main__`, `class Solution` handling, its comparison sequence (stripped text, lines, floats
    with numpy.allclose, token sets), and -2 for anything raised while the module loads.
  * Deliberate differences: a module-level `from sys import stdin` reads the test input (CodeRL
    handed such programs its own terminal); exiting at import is judged like exiting in a test
    (status 0: failed, else "systemexit"); a call-based program without the named function gets
    -1 "attributeerror" (CodeRL's harness crashed); time limits are CPU seconds of the program's
    whole process tree (4 s per test by default, as APPS), with a wall-clock limit for programs
    that sleep or block.
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

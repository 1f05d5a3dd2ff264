"""Sandboxed execution of programs against unit tests (SPEC §3-§4).

`ExecutionPool` (pool.py) is the main entry point; `run_program` runs one program with a
short-lived pool. Modules: sandbox.py (isolation, fork server), runtime.py (what runs inside a
sandbox), checkers.py (the judge: APPS / MBPP / HumanEval semantics), worker.py (a pool worker
process), codec.py (typed JSON across the boundary).
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

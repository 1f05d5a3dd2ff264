"""`coderl benchmark execute --problems SRC`: programs/s and tests/s of the sandbox pool against the
naive baseline (one fresh `python` interpreter per program), measured in the same run.

Two ratios: over all programs, and over the light ones (each judged in under `--light-s`
seconds by the pool: the per-program path, not a few compute-bound programs, decides it), for
which both sides run the light programs again. Also reported: where the workers' time went per
program (spawn: taking a sandbox from the fork server; load: loading the program; replies:
waiting for the program's answers; compile: compiling test code; end: killing the sandbox;
judge: the rest of the judge's own work), the CPU seconds per program of the whole pool
(workers, fork servers and sandboxes, from the kernel's accounting of reaped children), and
the CPU the pool bound each worker to by default (`worker_cpus`; null: left unbound).

The programs are the problems' reference solutions (MBPP `code`, HumanEval canonical solutions,
APPS `solutions.json`; `--per-problem` caps how many per problem). The baseline runs the same
programs with the same concurrency (`--workers`), each in `python -c <driver>` that executes the
program and its tests in-process (no isolation, no limits but a wall-clock timeout): the usual
"subprocess per sample" harness. The pool starts cold (worker start-up is included) with its
cache off for the measurement, so every program is really executed.
"""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time

from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.execution.checkers import problem_spec
from coderl_jax.execution.pool import ExecutionPool, worker_cpus

# Runs one program and its tests in a fresh interpreter; prints the per-test codes as JSON.
_NAIVE_DRIVER = r"""
import io, json, sys
job = json.loads(sys.stdin.read())
fmt, code, tests = job["format"], job["code"], job["tests"]
out = []
real_stdout = sys.stdout
try:
    if fmt == "assert":
        ns = {"__name__": "solution"}
        try:
            exec(compile(code, "<solution>", "exec"), ns)
            exec(tests.get("setup_code") or "", ns)
        except BaseException:
            out.append(-2)
        else:
            for a in tests["asserts"]:
                try:
                    exec(a, ns)
                    out.append(1)
                except AssertionError:
                    out.append(0); break
                except BaseException:
                    out.append(-1); break
    else:
        from coderl_jax.execution.runtime import APPS_PRELUDE, wrap_stdin_program
        from coderl_jax.execution.checkers import apps_call_args, apps_call_match, apps_stdin_match
        import types
        mod = types.ModuleType("tmp_sol")
        try:
            if fmt == "stdin":
                src = wrap_stdin_program(code)[0]
            else:
                src = APPS_PRELUDE + code
            exec(compile(src, "<solution>", "exec"), mod.__dict__)
            if fmt == "call":
                target = mod.Solution() if "class Solution" in code else mod
                fn = getattr(target, tests["fn_name"])
            else:
                fn = mod.code
        except BaseException:
            out.append(-2)
        else:
            for inp, exp in zip(tests["inputs"], tests["outputs"]):
                try:
                    if fmt == "stdin":
                        text = "\n".join(inp) if isinstance(inp, list) else inp
                        sys.stdin, sys.stdout = io.StringIO(text), io.StringIO()
                        try:
                            fn()
                        except SystemExit:
                            pass
                        got, sys.stdout = sys.stdout.getvalue(), real_stdout
                        ok = apps_stdin_match(got, exp)
                    else:
                        args, exp = apps_call_args(inp, exp)
                        ok = apps_call_match(fn(*args), exp)
                except BaseException:
                    sys.stdout = real_stdout
                    out.append(-1); break
                out.append(1 if ok else 0)
                if not ok:
                    break
finally:
    sys.stdout = real_stdout
    print(json.dumps(out))
"""


def add_arguments(parser) -> None:
    parser.add_argument("--problems", required=True, help="SRC: MBPP .jsonl, APPS folder, "
                        "'humaneval', 'demo'")
    parser.add_argument("--split", default=None, help="part of SRC (MBPP/demo splits)")
    parser.add_argument("--workers", type=int, default=2, help="pool workers = baseline "
                        "concurrency (default 2)")
    parser.add_argument("--timeout", type=float, default=4.0, help="per-test CPU seconds")
    parser.add_argument("--per-problem", type=int, default=1,
                        help="reference solutions per problem (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many programs")
    parser.add_argument("--baseline-limit", type=int, default=0,
                        help="run the naive baseline on only the first N programs (0: all)")
    parser.add_argument("--light-s", type=float, default=0.3,
                        help="a program is light when the pool judged it in less (default 0.3 s)")


def _naive(job: dict, timeout: float) -> list[int]:
    try:
        proc = subprocess.run([sys.executable, "-c", _NAIVE_DRIVER], input=json.dumps(job),
                              capture_output=True, text=True, timeout=timeout)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return [-1]


def run(args) -> dict:
    problems = load_problems(args.problems, split=args.split)
    by_id = problems_by_id(problems)
    rows = [{"problem_id": p.problem_id, "code": s}
            for p in problems for s in p.solutions[: max(args.per_problem, 1)]]
    if args.limit:
        rows = rows[: args.limit]
    if not rows:
        raise UserError(f"{args.problems}: no reference solutions to run")

    pool_s, results, phases, cpu_s = _run_pool(args, by_id, rows)
    pool_tests = sum(len(r["tests"]) for r in results)
    namespaces = True if phases.get("_namespaces") else False
    phases.pop("_namespaces", None)

    base_rows = rows[: args.baseline_limit] if args.baseline_limit else rows
    jobs = _naive_jobs(by_id, base_rows)
    naive_s, naive = _run_naive(args, jobs)
    naive_tests = sum(len(r) for r in naive)

    light = [row for row, r in zip(rows, results) if r["seconds"] < args.light_s]
    light_s, _, _, _ = _run_pool(args, by_id, light) if light else (0.0, [], {}, 0.0)
    light_naive_s, _ = _run_naive(args, _naive_jobs(by_id, light)) if light else (0.0, [])
    pool_pps = len(rows) / pool_s
    naive_pps = len(jobs) / naive_s
    agree = sum((r["result"] == 1) == (all(x == 1 for x in n) and bool(n))
                for r, n in zip(results, naive))
    return {
        "problems": args.problems,
        "programs": len(rows),
        "workers": args.workers,
        "isolation": "namespaces" if namespaces else "basic",
        "worker_cpus": worker_cpus(args.workers, None),  # the CPU each worker is bound to
        "programs_per_s": round(pool_pps, 2),
        "tests_per_s": round(pool_tests / pool_s, 2),
        "seconds": round(pool_s, 3),
        "passed": sum(r["result"] == 1 for r in results),
        "reference_programs": len(jobs),
        "reference_programs_per_s": round(naive_pps, 2),
        "reference_tests_per_s": round(naive_tests / naive_s, 2),
        "reference_seconds": round(naive_s, 3),
        "reference_agreement": round(agree / len(jobs), 4),
        "ratio": round(pool_pps / naive_pps, 2),
        "light_programs": len(light),
        "light_programs_per_s": round(len(light) / light_s, 2) if light else None,
        "light_reference_programs_per_s": round(len(light) / light_naive_s, 2) if light else None,
        "light_ratio": round(light_naive_s / light_s, 2) if light else None,
        "phase_ms_per_program": {k: round(1000 * v / len(rows), 3) for k, v in phases.items()},
        "cpu_s_per_program": round(cpu_s / len(rows), 5),
    }


def _run_pool(args, by_id, rows):
    """(seconds, results, wall seconds by phase summed over workers, CPU seconds of the pool's
    processes) for one cold pool run with the cache off."""
    import resource

    def children_cpu():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    cpu0 = children_cpu()
    t0 = time.perf_counter()
    with ExecutionPool(workers=args.workers, timeout=args.timeout, cache_size=0) as pool:
        results = pool.run(by_id, rows)
        phases = dict(pool.stats()["phase_seconds"])
        phases["_namespaces"] = bool(pool.namespaces)
    seconds = time.perf_counter() - t0
    return seconds, results, phases, children_cpu() - cpu0  # workers are reaped by close()


def _naive_jobs(by_id, rows) -> list[dict]:
    specs, jobs = {}, []
    for row in rows:
        p = by_id[row["problem_id"]]
        if p.problem_id not in specs:
            specs[p.problem_id] = problem_spec(p)
        spec = specs[p.problem_id]
        jobs.append({"format": spec["format"], "code": row["code"], "tests": spec["tests"]})
    return jobs


def _run_naive(args, jobs):
    wall = 5 * args.timeout + 1
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as ex:
        naive = list(ex.map(lambda j: _naive(j, wall), jobs))
    return time.perf_counter() - t0, naive

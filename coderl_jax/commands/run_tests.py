"""`coderl run-tests`: execute programs against their problems' unit tests in the sandbox.

Reads JSON-lines rows holding at least `problem_id` and `code` and writes each row back, in the
same order, with `result`, `error_type`, `tests`, `seconds`, `error_message` and `error_line`
(SPEC §3/§4). The output is written atomically.
"""
from __future__ import annotations

import sys

from coderl_jax.commands import arguments


def register(sub) -> None:
    p = sub.add_parser("run-tests", help="execute programs against unit tests in the sandbox",
                       description=__doc__.splitlines()[0])
    arguments.add_problems(p)
    p.add_argument("--programs", required=True, help="input rows (JSON lines)")
    p.add_argument("--out", required=True, help="output rows (JSON lines, written atomically)")
    p.add_argument("--workers", type=int, default=2, help="sandbox workers (default 2)")
    p.add_argument("--timeout", type=float, default=4.0,
                   help="CPU seconds per test (default 4, as APPS)")
    p.add_argument("--example-tests", action="store_true",
                   help="run only the example tests (CodeRL's example_input_output.json, "
                        "MBPP's first assert)")
    p.add_argument("--all-tests", action="store_true",
                   help="run every test even after one fails (default: stop at the first)")
    p.add_argument("--harness", choices=("real", "coderl"), default="real",
                   help="how APPS standard-input programs run: 'real' (default: a process per "
                        "test with real stdin/stdout; exit status and signals count) or 'coderl' "
                        "(CodeRL's in-process harness, quirks included)")
    p.set_defaults(func=run)


def run(args) -> int:
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.errors import UserError
    from coderl_jax.execution.pool import ExecutionPool
    from coderl_jax.files import read_jsonl, write_jsonl

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if not args.timeout > 0:
        raise UserError("--timeout must be positive")
    rows = read_jsonl(args.programs)
    for n, row in enumerate(rows, 1):
        if "problem_id" not in row or not isinstance(row.get("code"), str):
            raise UserError(f"{args.programs}: row {n} needs 'problem_id' and a string 'code'")
    by_id = problems_by_id(load_problems(args.problems, split=args.split))
    missing = sorted({str(r["problem_id"]) for r in rows} - set(by_id))
    if missing:
        raise UserError(f"{args.programs}: unknown problem id(s) {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (not in {args.problems})")
    if args.example_tests:
        lacking = sorted({str(r["problem_id"]) for r in rows
                          if by_id[str(r["problem_id"])].example_tests is None})
        if lacking:
            raise UserError(f"problem(s) {', '.join(lacking[:5])} have no example tests")

    from tqdm import tqdm

    with tqdm(total=len(rows), desc="run-tests", unit="prog", file=sys.stderr,
              disable=len(rows) < 2) as bar:
        with ExecutionPool(workers=args.workers, timeout=args.timeout,
                           harness=getattr(args, "harness", "real")) as pool:
            results = pool.run(by_id, [{"problem_id": str(r["problem_id"]), "code": r["code"]}
                                       for r in rows],
                               example_tests=args.example_tests,
                               stop_at_first_failure=not args.all_tests, progress=bar.update)
    write_jsonl(args.out, (dict(row, **res) for row, res in zip(rows, results)))
    passed = sum(r["result"] == 1 for r in results)
    print(f"{len(rows)} programs: {passed} passed, {len(rows) - passed} not "
          f"-> {args.out}", file=sys.stderr)
    return 0

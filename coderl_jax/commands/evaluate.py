"""`coderl evaluate`: pass@k and n@k from `coderl run-tests` rows, overall and per difficulty.

    coderl evaluate --results hidden.jsonl --k 1,5 [--json]
    coderl evaluate --results hidden.jsonl --example-results example.jsonl --n 1,5 --k 5,100

Rows (SPEC §3) need `problem_id` and `result`; `sample_index` orders samples (row order when
absent). n@k filters on the example-test outcome — a row's `example_result`, or the `result` of the
matching row (same problem_id and sample_index) of `--example-results`, i.e. the output of
`coderl run-tests --example-tests` — and ranks by `critic_score`, else the critic's P(passed)
(`probs[-1]`, from `coderl critic-score`), or by log-probability (`logprob`, or the sum of
`logprobs` / `token_logprobs`). n@k is an exact expectation over k-subsets (see
coderl_jax/evaluation.py). Difficulty comes from the rows' `difficulty` or from `--problems SRC`.
"""
from __future__ import annotations

import json
import math

from coderl_jax.errors import UserError

DEFAULT_KS = (1, 5, 10, 100)
DEFAULT_NS = (1, 5)
OUTCOMES = (-2, -1, 0, 1)
RANKINGS = ("auto", "critic", "logprob", "none")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="pass@k and n@k from execution results",
                       description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, metavar="OUT.jsonl",
                   help="rows written by `coderl run-tests` (hidden tests)")
    p.add_argument("--k", type=_int_list("--k"), default=None, metavar="K[,K...]",
                   help="sample budgets (default: those of 1,5,10,100 that every problem has "
                        "samples for; an explicit k above a problem's sample count is an error)")
    p.add_argument("--n", type=_int_list("--n"), default=None, metavar="N[,N...]",
                   help="submissions for n@k (default 1,5 when example-test results exist); "
                        "only n <= k is reported")
    p.add_argument("--example-results", default=None, metavar="EX.jsonl",
                   help="rows of `coderl run-tests --example-tests` for the same programs")
    p.add_argument("--rank-by", choices=RANKINGS, default="auto",
                   help="n@k ranking: critic P(passed), log-probability, or none (sample order); "
                        "auto: critic if every row has it, else logprob, else none")
    p.add_argument("--problems", default=None, metavar="SRC",
                   help="problem source (SPEC §2) supplying each problem's difficulty")
    p.add_argument("--per-problem", action="store_true",
                   help="with --json, also include every problem's numbers under 'per_problem'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        import argparse

        try:
            values = tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} needs comma-separated integers, got {text!r}")
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"{flag} needs positive integers, got {text!r}")
        return tuple(sorted(set(values)))

    return parse


def _score(row: dict, rank_by: str) -> float | None:
    """The row's ranking score for `rank_by` ('critic' or 'logprob'), None when absent."""
    if rank_by == "critic":
        if _is_number(row.get("critic_score")):
            return float(row["critic_score"])
        probs = row.get("probs")
        if isinstance(probs, list) and probs and _is_number(probs[-1]):
            return float(probs[-1])  # last class = passed (4-class and binary critics)
        return None
    for key in ("logprob", "log_prob"):
        if _is_number(row.get(key)):
            return float(row[key])
    for key in ("logprobs", "token_logprobs"):
        values = row.get(key)
        if isinstance(values, list) and all(_is_number(v) for v in values):
            return float(math.fsum(values))
    return None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _outcome(row: dict, where: str, key: str = "result") -> int:
    value = row.get(key)
    if isinstance(value, bool) or value not in OUTCOMES:
        raise UserError(f"{where}: '{key}' must be one of -2, -1, 0, 1 (got {value!r})")
    return int(value)


def load_samples(results_path: str, example_path: str | None = None, rank_by: str = "auto"):
    """Read result rows (and example results) into ProblemSamples; returns (problems, rank_by).

    Rows are streamed and only the fields evaluation needs are kept, so a file of millions of
    programs fits in memory. A problem's difficulty is its rows' `difficulty`, else "unknown".
    """
    from coderl_jax.evaluation import ProblemSamples

    examples = None if example_path is None else _keyed_rows(example_path)
    merged = []  # (key, slim row with example_result filled in)
    for key, row in _keyed_rows(results_path).items():
        if examples is not None:
            if key not in examples:
                raise UserError(f"{row['where']}: sample {key[1]} of problem {key[0]} has no row "
                                f"in {example_path}")
            ex = examples[key]
            row["example_result"] = ex["result"]
            for score in ("critic", "logprob"):  # e.g. critic-score ran on the example rows
                if row[score] is None:
                    row[score] = ex[score]
        merged.append((key, row))

    if rank_by == "auto":
        rank_by = next((r for r in ("critic", "logprob")
                        if all(row[r] is not None for _, row in merged)), "none")

    problems: dict[str, ProblemSamples] = {}
    for row_number, (key, row) in enumerate(merged, 1):
        p = problems.setdefault(key[0], ProblemSamples(key[0], row["difficulty"]))
        p.results.append(row["result"])
        p.example_results.append(row["example_result"])
        p.scores.append(None if rank_by == "none" else row[rank_by])
        p.order.append((key[1], row_number))
    return list(problems.values()), rank_by


def _iter_jsonl(path: str):
    """(label 'file:line', row) for each JSON object of a JSON-lines file, streamed."""
    from coderl_jax import paths

    path = paths.require_exists(path, "file")
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object per line")
            yield f"{path}:{lineno}", row


def _keyed_rows(path: str) -> dict[tuple[str, int], dict]:
    """Slim rows of a JSON-lines file by (problem_id, sample_index)."""
    keyed: dict[tuple[str, int], dict] = {}
    counts: dict[str, int] = {}
    for where, row in _iter_jsonl(path):
        pid = row.get("problem_id")
        if pid is None or isinstance(pid, (bool, list, dict)) or pid == "":
            raise UserError(f"{where}: missing or invalid 'problem_id'")
        pid = str(pid)
        index = row.get("sample_index", counts.get(pid, 0))
        counts[pid] = counts.get(pid, 0) + 1
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserError(f"{where}: 'sample_index' must be an integer (got {index!r})")
        if (pid, index) in keyed:
            raise UserError(f"{where}: duplicate sample {index} of problem {pid}")
        keyed[(pid, index)] = {
            "where": where,
            "result": _outcome(row, where),
            "example_result": (_outcome(row, where, "example_result")
                               if "example_result" in row else None),
            "difficulty": str(row.get("difficulty") or "unknown"),
            "critic": _score(row, "critic"),
            "logprob": _score(row, "logprob"),
        }
    if not keyed:
        raise UserError(f"{path}: no rows")
    return keyed


def _difficulties(src: str, problem_ids) -> dict[str, str]:
    from coderl_jax.data.sources import load_problems  # lazy: the data package is heavier

    known = {p.problem_id: p.difficulty for p in load_problems(src)}
    missing = [pid for pid in problem_ids if pid not in known]
    if missing:
        raise UserError(f"problem {missing[0]} of the results is not in {src} "
                        f"({len(missing)} missing)")
    return known


def run(args) -> int:
    from coderl_jax.evaluation import summarize

    problems, rank_by = load_samples(args.results, args.example_results, args.rank_by)
    if args.problems is not None:
        known = _difficulties(args.problems, [p.problem_id for p in problems])
        for p in problems:
            if p.difficulty == "unknown":
                p.difficulty = known[p.problem_id] or "unknown"
    min_samples = min(p.num_samples for p in problems)
    ks = args.k or tuple(k for k in DEFAULT_KS if k <= min_samples)
    has_filter = all(p.has_filter for p in problems)
    if args.n is not None and not has_filter:
        raise UserError("--n needs example-test results: rows with 'example_result' or "
                        "--example-results EX.jsonl")
    ns = args.n or (DEFAULT_NS if has_filter else ())
    summary = summarize(problems, ks, ns, use_scores=rank_by != "none", progress=True)
    summary["k"] = list(ks)
    summary["n"] = list(ns)
    summary["filter"] = ({"example_tests": True, "rank_by": rank_by, "n_at_k": "exact"}
                         if has_filter and ns else None)
    per_problem = summary.pop("per_problem")
    if args.json:
        if args.per_problem:
            summary["per_problem"] = per_problem
        print(json.dumps(summary))
    else:
        print(format_table(summary, args.results))
    return 0


def format_table(summary: dict, source: str) -> str:
    """A readable table: one row overall, one per difficulty; percentages."""
    keys = [f"pass@{k}" for k in summary["k"]]
    keys += [f"{n}@{k}" for k in summary["k"] for n in summary["n"] if n <= k]
    header = ["difficulty", "problems", "samples", *keys]
    rows = [["all", summary]] + [[d, s] for d, s in summary["by_difficulty"].items()]
    table = [header] + [[name, str(s["num_problems"]), str(s["num_samples"]),
                         *(f"{100 * s[key]:.2f}%" for key in keys)] for name, s in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"results: {source}"]
    if summary["filter"]:
        lines.append(f"n@k: keep programs passing the example tests, ranked by "
                     f"{summary['filter']['rank_by']}; exact expectation over k-subsets")
    for r in table:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)

"""`coderl evaluate`: pass@k and n@k from `coderl run-tests` rows, overall and per difficulty.

    coderl evaluate --results hidden.jsonl --k 1,5 [--json]
    coderl evaluate --results hidden.jsonl --example-results example.jsonl --n 1,5 --k 5,100
    coderl evaluate --compare A.jsonl B.jsonl --k 1,5 [--json]

Rows (SPEC §3) need `problem_id` and `result`; `sample_index` orders samples (row order when
absent). n@k filters on the example-test outcome — a row's `example_result`, or the `result` of the
matching row (same problem_id and sample_index) of `--example-results`, i.e. the output of
`coderl run-tests --example-tests` — and ranks by `critic_score`, else the critic's P(passed)
(`probs[-1]`, from `coderl critic-score`), or by log-probability (`logprob`, or the sum of
`logprobs` / `token_logprobs`). n@k is an exact expectation over k-subsets (see
coderl_jax/evaluation.py). Difficulty comes from the rows' `difficulty` or from `--problems SRC`.

Every metric gets a `--ci` interval (default 90%; 0: none): the percentile bootstrap over problems
with `--bootstrap` resamples drawn from `--seed` (coderl_jax/stats.py). `--compare A B` reads two
result files of the same problems (a different problem set is an error: a paired comparison
needs the same problems) and reports each metric of A and of B and the paired difference B - A,
its interval resampling the same problems for both; n@k there needs `example_result` in the rows.
"""
from __future__ import annotations

import json
import math

from coderl_jax.errors import UserError

DEFAULT_KS = (1, 5, 10, 100)
DEFAULT_NS = (1, 5)
OUTCOMES = (-2, -1, 0, 1)
RANKINGS = ("auto", "critic", "logprob", "none")
DEFAULT_LEVEL, DEFAULT_RESAMPLES = 0.90, 2000  # as coderl_jax/stats.py (kept light: no numpy)


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="pass@k and n@k from execution results",
                       description=__doc__.splitlines()[0])
    p.add_argument("--results", default=None, metavar="OUT.jsonl",
                   help="rows written by `coderl run-tests` (hidden tests)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A.jsonl", "B.jsonl"),
                   help="instead of --results: two result files of the same problems; reports "
                        "A, B and the paired difference B - A with its interval")
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
                   help="problem source (docs/SPEC.md §2) supplying each problem's difficulty")
    p.add_argument("--per-problem", action="store_true",
                   help="with --json, also include every problem's numbers under 'per_problem'")
    p.add_argument("--ci", type=float, default=DEFAULT_LEVEL, metavar="LEVEL",
                   help="confidence level of the bootstrap intervals (default 0.90; 0: none)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="N",
                   help=f"bootstrap resamples of the problems (default {DEFAULT_RESAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
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


def _keyed_rows(path: str) -> dict[tuple[str, int], dict]:
    """Slim rows of a JSON-lines file by (problem_id, sample_index)."""
    keyed: dict[tuple[str, int], dict] = {}
    counts: dict[str, int] = {}
    from coderl_jax.files import iter_jsonl

    for where, row in iter_jsonl(path):
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


def _check_stats_flags(args) -> None:
    from coderl_jax.stats import check_level

    check_level(args.ci)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")


def _load(path: str, args, example_path: str | None = None):
    """ProblemSamples of one result file with difficulties filled in; (problems, rank_by)."""
    problems, rank_by = load_samples(path, example_path, args.rank_by)
    if args.problems is not None:
        known = _difficulties(args.problems, [p.problem_id for p in problems])
        for p in problems:
            if p.difficulty == "unknown":
                p.difficulty = known[p.problem_id] or "unknown"
    return problems, rank_by


def _budgets(args, problem_sets) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(ks, ns, has_filter) for the problems of one or more runs."""
    everything = [p for problems in problem_sets for p in problems]
    min_samples = min(p.num_samples for p in everything)
    ks = args.k or tuple(k for k in DEFAULT_KS if k <= min_samples)
    has_filter = all(p.has_filter for p in everything)
    if args.n is not None and not has_filter:
        raise UserError("--n needs example-test results: rows with 'example_result' or "
                        "--example-results EX.jsonl")
    ns = args.n or (DEFAULT_NS if has_filter else ())
    return ks, ns, has_filter


def run(args) -> int:
    from coderl_jax.evaluation import add_intervals, metric_keys, summarize
    from coderl_jax.stats import ci_settings

    _check_stats_flags(args)
    if args.compare is not None:
        if args.results is not None:
            raise UserError("give --results OUT.jsonl or --compare A.jsonl B.jsonl, not both")
        return run_compare(args)
    if args.results is None:
        raise UserError("give --results OUT.jsonl (or --compare A.jsonl B.jsonl)")
    problems, rank_by = _load(args.results, args, args.example_results)
    ks, ns, has_filter = _budgets(args, [problems])
    summary = summarize(problems, ks, ns, use_scores=rank_by != "none", progress=True)
    add_intervals(summary, metric_keys(ks, ns), args.ci, args.bootstrap, args.seed)
    summary["k"] = list(ks)
    summary["n"] = list(ns)
    summary["filter"] = ({"example_tests": True, "rank_by": rank_by, "n_at_k": "exact"}
                         if has_filter and ns else None)
    summary["ci"] = ci_settings(args.ci, args.bootstrap, args.seed)
    per_problem = summary.pop("per_problem")
    if args.json:
        if args.per_problem:
            summary["per_problem"] = per_problem
        print(json.dumps(summary))
    else:
        print(format_table(summary, args.results))
    return 0


def run_compare(args) -> int:
    """`--compare A B`: each metric of A and B and the paired difference B - A."""
    from coderl_jax.evaluation import add_intervals, metric_keys, summarize
    from coderl_jax.stats import ci_settings, paired_difference

    if args.example_results is not None:
        raise UserError("--compare reads example-test results from the rows' 'example_result'; "
                        "--example-results goes with --results")
    path_a, path_b = args.compare
    pa, rank_a = _load(path_a, args)
    pb, rank_b = _load(path_b, args)
    ids_a, ids_b = {p.problem_id for p in pa}, {p.problem_id for p in pb}
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
        example = (f"{only_a[0]} is only in {path_a}" if only_a else
                   f"{only_b[0]} is only in {path_b}")
        raise UserError(f"--compare needs the same problems in both files: {len(only_a)} only in "
                        f"A, {len(only_b)} only in B (problem {example})")
    # one difficulty per problem for both runs: A's, else B's
    diff_b = {p.problem_id: p.difficulty for p in pb}
    for p in pa:
        if p.difficulty == "unknown":
            p.difficulty = diff_b[p.problem_id]
    diff_a = {p.problem_id: p.difficulty for p in pa}
    for p in pb:
        p.difficulty = diff_a[p.problem_id]
    ks, ns, has_filter = _budgets(args, [pa, pb])
    keys = metric_keys(ks, ns)
    runs = {}
    for name, problems, rank_by in (("a", pa, rank_a), ("b", pb, rank_b)):
        summary = summarize(problems, ks, ns, use_scores=rank_by != "none", progress=True)
        runs[name] = add_intervals(summary, keys, args.ci, args.bootstrap, args.seed)
    order = [p.problem_id for p in pa]

    def side(summary: dict, group: str | None) -> dict:
        s = summary if group is None else summary["by_difficulty"][group]
        return {k: v for k, v in s.items() if k not in ("by_difficulty", "per_problem")}

    def difference(ids: list[str]) -> dict:
        return paired_difference([runs["a"]["per_problem"][i] for i in ids],
                                 [runs["b"]["per_problem"][i] for i in ids], keys,
                                 args.ci, args.bootstrap, args.seed)

    out = {"a": {"file": path_a, **side(runs["a"], None)},
           "b": {"file": path_b, **side(runs["b"], None)},
           "difference": difference(order),
           "num_problems": len(order), "k": list(ks), "n": list(ns),
           "filter": ({"example_tests": True, "rank_by": {"a": rank_a, "b": rank_b},
                       "n_at_k": "exact"} if has_filter and ns else None),
           "ci": ci_settings(args.ci, args.bootstrap, args.seed),
           "by_difficulty": {
               d: {"a": side(runs["a"], d), "b": side(runs["b"], d),
                   "difference": difference([i for i in order if diff_a[i] == d])}
               for d in runs["a"]["by_difficulty"]}}
    print(json.dumps(out) if args.json else format_compare(out))
    return 0


def _with_ci(s: dict, key: str, signed: bool = False) -> str:
    """`0.123 [0.101, 0.146]` (the interval only when the summary has one)."""
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(s[key])
    ci = s.get(key + "_ci")
    return text if ci is None else f"{text} [{fmt.format(ci['low'])}, {fmt.format(ci['high'])}]"


def _ci_note(ci: dict | None, paired: bool = False) -> str | None:
    if ci is None:
        return None
    what = "paired bootstrap" if paired else "bootstrap"
    return (f"[{100 * ci['level']:g}% intervals: {what} over problems, {ci['resamples']} "
            f"resamples, seed {ci['seed']}]")


def _columns(table: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in table]


def format_compare(out: dict) -> str:
    """A readable comparison: per group and metric, A and B with intervals, and B - A."""
    keys = [f"pass@{k}" for k in out["k"]]
    keys += [f"{n}@{k}" for k in out["k"] for n in out["n"] if n <= k]
    groups = [("all", out)] + list(out["by_difficulty"].items())
    if len(groups) == 2 and groups[1][1]["a"]["num_problems"] == out["num_problems"]:
        groups = groups[:1]  # one difficulty: its rows repeat "all"
    table = [["group", "metric", "A", "B", "B - A"]]
    for name, g in groups:
        for key in keys:
            table.append([name, key, _with_ci(g["a"], key), _with_ci(g["b"], key),
                          _with_ci(g["difference"], key, signed=True)])
    lines = [f"A: {out['a']['file']}", f"B: {out['b']['file']}",
             f"{out['num_problems']} problems in both"]
    note = _ci_note(out["ci"], paired=True)
    if note:
        lines.append(note)
    return "\n".join(lines + _columns(table))


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
    note = _ci_note(summary.get("ci"))
    if note:  # the overall numbers with their intervals first: "pass@1 0.123 [0.101, 0.146]"
        lines += [f"{key} {_with_ci(summary, key)}" for key in keys] + [note]
    if summary["filter"]:
        lines.append(f"n@k: keep programs passing the example tests, ranked by "
                     f"{summary['filter']['rank_by']}; exact expectation over k-subsets")
    for r in table:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)

"""pass@k and n@k from execution results, overall and per difficulty.

pass@k (Chen et al. 2021): with n samples of which c pass, the unbiased estimate of the chance that
at least one of k samples drawn without replacement passes is `1 - C(n-c, k) / C(n, k)`, computed
as the product `1 - prod_{i=n-c+1..n} (1 - k/i)` so it never forms huge binomials.

n@k (Li et al. 2022, AlphaCode; CodeRL §4): draw k of the n samples, keep those that pass the
problem's example tests, rank them by a score (critic P(pass) or log-probability; higher first),
submit the top n; the problem counts as solved if any submitted program passes the hidden tests.
`n_at_k` returns the *exact* expectation over all C(n_samples, k) equally likely k-subsets,
counted in closed form (no Monte-Carlo): for each hidden-correct program e_j at rank j of the
filtered ranking, the subsets in which e_j is the first correct filtered program and at most n-1
incorrect filtered programs rank above it are
`sum_t C(a_j, t) * C(N - 1 - a_j - b_j, k - 1 - t)`, t = 0..n-1, where a_j / b_j count the
incorrect / correct filtered programs ranked above e_j. These events are disjoint, so their sum
over j divided by C(N, k) is the probability. Ties in the score are broken by sample order
(sample_index, then row order); with i.i.d. samples that is a uniformly random tie-break, and the
same order is the whole ranking when no score is given.

`add_intervals` gives each metric its bootstrap interval over problems (coderl_jax/stats.py),
overall and per difficulty.

Library code only: no JAX, no files; `coderl_jax/commands/evaluate.py` reads rows and prints.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from coderl_jax.errors import UserError
from coderl_jax.stats import metric_intervals

PASSED = 1  # SPEC §4 outcome code of a program that passed every test
DIFFICULTY_ORDER = ("introductory", "interview", "competition", "easy", "medium", "hard",
                    "unknown")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples, c of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    # 1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def estimate_pass_at_k(num_samples: int | Sequence[int], num_correct: Sequence[int],
                       k: int) -> np.ndarray:
    """pass@k of each problem: [problems] -> [problems] float64."""
    num_correct = list(num_correct)
    if isinstance(num_samples, (int, np.integer)):
        num_samples = [int(num_samples)] * len(num_correct)
    if len(num_samples) != len(num_correct):
        raise ValueError("num_samples and num_correct differ in length")
    return np.array([pass_at_k(int(n), int(c), k) for n, c in zip(num_samples, num_correct)],
                    dtype=np.float64)


def n_at_k(correct: Sequence[bool], passes_filter: Sequence[bool],
           scores: Sequence[float] | None, n: int, k: int) -> float:
    """Exact expected n@k of one problem over random k-subsets of its samples.

    `correct[i]`: sample i passes the hidden tests; `passes_filter[i]`: it passes the example
    tests; `scores[i]`: its ranking score (higher is better; None ranks by sample order).
    """
    total = len(correct)
    if len(passes_filter) != total or (scores is not None and len(scores) != total):
        raise ValueError("correct, passes_filter and scores differ in length")
    if not 1 <= k <= total:
        raise ValueError(f"need 1 <= k <= number of samples ({total}), got k={k}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    # The filtered samples, best first; ties keep sample order (Python's sort is stable).
    kept = [i for i in range(total) if passes_filter[i]]
    if scores is not None:
        kept.sort(key=lambda i: -float(scores[i]))
    favourable = 0
    above_wrong = above_right = 0  # a_j and b_j of the module docstring
    for i in kept:
        if correct[i]:
            rest = total - 1 - above_wrong - above_right
            favourable += sum(math.comb(above_wrong, t) * math.comb(rest, k - 1 - t)
                              for t in range(min(n - 1, above_wrong, k - 1) + 1))
            above_right += 1
        else:
            above_wrong += 1
    return favourable / math.comb(total, k)  # exact integers; one correctly rounded division


@dataclasses.dataclass
class ProblemSamples:
    """The execution outcomes of every sample of one problem."""

    problem_id: str
    difficulty: str = "unknown"
    results: list[int] = dataclasses.field(default_factory=list)  # hidden-test outcome codes
    example_results: list[int | None] = dataclasses.field(default_factory=list)
    scores: list[float | None] = dataclasses.field(default_factory=list)
    order: list[tuple] = dataclasses.field(default_factory=list)  # (sample_index, row number)

    @property
    def num_samples(self) -> int:
        return len(self.results)

    @property
    def num_correct(self) -> int:
        return sum(r == PASSED for r in self.results)

    def sorted_samples(self) -> "ProblemSamples":
        """A copy with samples in sample order (the tie-break of n@k's ranking)."""
        idx = sorted(range(self.num_samples), key=lambda i: self.order[i])
        pick = lambda xs: [xs[i] for i in idx]
        return ProblemSamples(self.problem_id, self.difficulty, pick(self.results),
                              pick(self.example_results), pick(self.scores), pick(self.order))

    @property
    def has_filter(self) -> bool:
        return bool(self.example_results) and all(r is not None for r in self.example_results)

    @property
    def has_scores(self) -> bool:
        return bool(self.scores) and all(s is not None for s in self.scores)


def problem_n_at_k(p: ProblemSamples, n: int, k: int, use_scores: bool = True) -> float:
    """n@k of one problem from its ProblemSamples (filter: example result == passed)."""
    p = p.sorted_samples()
    return n_at_k([r == PASSED for r in p.results], [r == PASSED for r in p.example_results],
                  p.scores if use_scores else None, n, k)


def _difficulty_key(d: str) -> tuple:
    return (DIFFICULTY_ORDER.index(d) if d in DIFFICULTY_ORDER else len(DIFFICULTY_ORDER), d)


def metric_keys(ks: Sequence[int], ns: Sequence[int] = ()) -> list[str]:
    """The metric names of a summary: pass@k for each k, then n@k for n <= k."""
    return [f"pass@{k}" for k in ks] + [f"{n}@{k}" for k in ks for n in ns if n <= k]


def summarize(problems: Iterable[ProblemSamples], ks: Sequence[int],
              ns: Sequence[int] = (), use_scores: bool = True, progress: bool = False) -> dict:
    """Mean pass@k (and n@k for n <= k when `ns` is given) overall and per difficulty.

    Returns `{"pass@1": …, "1@5": …, "num_problems": …, "by_difficulty": {d: {same keys}},
    "per_problem": {pid: {same keys}}}`; raises UserError when a k exceeds a problem's samples.
    """
    problems = list(problems)
    if not problems:
        raise UserError("no results to evaluate")
    for k in ks:
        if k < 1:
            raise UserError(f"k must be a positive integer, got {k}")
        short = [p for p in problems if p.num_samples < k]
        if short:
            p = min(short, key=lambda q: q.num_samples)
            raise UserError(f"k={k} exceeds the {p.num_samples} sample(s) of problem "
                            f"{p.problem_id} ({len(short)} problem(s) have fewer than {k})")
    pairs = [(n, k) for k in ks for n in ns if n <= k]  # the order of metric_keys
    if pairs:
        missing = [p.problem_id for p in problems if not p.has_filter]
        if missing:
            raise UserError(f"n@k needs an example-test result for every sample; problem "
                            f"{missing[0]} has samples without one")
        if use_scores:
            unscored = [p.problem_id for p in problems if not p.has_scores]
            if unscored:
                raise UserError(f"n@k ranking needs a score for every sample; problem "
                                f"{unscored[0]} has samples without one")

    per_problem: dict[str, dict] = {}
    if progress:  # a bar on stderr when it is a terminal and there are many problems
        from tqdm import tqdm

        problems = tqdm(problems, desc="evaluate", unit="problem", leave=False,
                        disable=None if len(problems) >= 500 else True)
    for p in problems:
        entry = {"difficulty": p.difficulty, "num_samples": p.num_samples,
                 "num_correct": p.num_correct}
        for k in ks:
            entry[f"pass@{k}"] = pass_at_k(p.num_samples, p.num_correct, k)
        for n, k in pairs:
            entry[f"{n}@{k}"] = problem_n_at_k(p, n, k, use_scores)
        per_problem[p.problem_id] = entry

    keys = metric_keys(ks, ns)

    def mean_of(entries: list[dict]) -> dict:
        out = {key: float(np.mean([e[key] for e in entries])) for key in keys}
        out["num_problems"] = len(entries)
        out["num_samples"] = int(sum(e["num_samples"] for e in entries))
        return out

    groups: dict[str, list[dict]] = defaultdict(list)
    for e in per_problem.values():
        groups[e["difficulty"]].append(e)
    summary = mean_of(list(per_problem.values()))
    summary["by_difficulty"] = {d: mean_of(groups[d]) for d in sorted(groups, key=_difficulty_key)}
    summary["per_problem"] = per_problem
    return summary


def add_intervals(summary: dict, keys: Sequence[str], level: float, resamples: int,
                  seed: int) -> dict:
    """Add `key + "_ci": {"low", "high"}` (bootstrap over problems, coderl_jax/stats.py) for each
    metric key, overall and per difficulty, from `summary["per_problem"]`; returns `summary`."""
    if not level:
        return summary
    entries = list(summary["per_problem"].values())
    summary.update(metric_intervals(entries, keys, level, resamples, seed))
    for d, group in summary["by_difficulty"].items():
        group.update(metric_intervals([e for e in entries if e["difficulty"] == d], keys,
                                      level, resamples, seed))
    return summary

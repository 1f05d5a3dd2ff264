"""Uncertainty of evaluation numbers: bootstrap intervals over problems, AUROC and Brier score.

A metric such as pass@k is the mean over problems of a per-problem value. Its interval is the
percentile bootstrap over problems: draw `resamples` sets of P problems with replacement (one
seeded call, `numpy.random.default_rng(seed).integers(0, P, (resamples, P), dtype=int32)`), take
the mean of each set, and report the (1 - level)/2 and (1 + level)/2 quantiles of those means
(numpy's linear interpolation). A paired difference B - A (two runs on the same problems)
resamples the problems once and takes the mean of the per-problem differences on each set, so
both runs see the same problems in every resample. Resamples become per-problem counts and all
metrics one matrix product: milliseconds for the demo's 81 problems, about 0.3 s for 2000
resamples of APPS's 5000 problems on 2 CPU cores.

AUROC is the Mann-Whitney statistic: the chance that a random positive scores above a random
negative, ties counted half, from average ranks. Brier score is the mean squared difference
between the predicted probability and the 0/1 outcome.

Library code only: numpy, no files.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from coderl_jax.errors import UserError

DEFAULT_LEVEL = 0.90
DEFAULT_RESAMPLES = 2000
METHOD = "percentile bootstrap over problems"


def check_level(level: float) -> None:
    """0 (intervals off) or a level strictly between 0 and 1."""
    if not (level == 0 or 0 < level < 1):
        raise UserError(f"--ci must be 0 (no intervals) or a level between 0 and 1, got {level}")


def resample_indices(num_problems: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, num_problems] int32 problem indices drawn with replacement, seeded."""
    if num_problems < 1:
        raise UserError("no problems to resample")
    if resamples < 1:
        raise UserError(f"--bootstrap must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_problems, size=(resamples, num_problems), dtype=np.int32)


def resampled_means(values: np.ndarray, indices: np.ndarray, chunk_elements: int = 1 << 22
                    ) -> np.ndarray:
    """Mean of `values` [P] or [P, M] over each row of `indices` [B, P'] -> [B] or [B, M].

    Each resample becomes its per-problem counts (a few resamples at a time, so the counts
    never exceed `chunk_elements`), and the means one matrix product per chunk."""
    values = np.asarray(values, np.float64)
    indices = np.asarray(indices)
    b, size = indices.shape
    p = values.shape[0]
    rows = max(1, chunk_elements // max(p, size))
    out = np.empty((b,) + values.shape[1:], np.float64)
    for start in range(0, b, rows):
        part = indices[start:start + rows].astype(np.int64)
        n = part.shape[0]
        part += p * np.arange(n, dtype=np.int64)[:, None]  # row r counts into bins r*p .. r*p+p-1
        counts = np.bincount(part.ravel(), minlength=n * p).reshape(n, p)
        out[start:start + n] = counts @ values / size
    return out


def interval(means: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` interval of resampled means [B] or [B, M]: (low, high)."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return low, high


def bootstrap_ci(values: np.ndarray, level: float = DEFAULT_LEVEL,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the mean of per-problem `values` [P] or [P, M]: (low, high)."""
    values = np.asarray(values, np.float64)
    idx = resample_indices(values.shape[0], resamples, seed)
    return interval(resampled_means(values, idx), level)


def _as_ci(low, high) -> dict:
    return {"low": float(low), "high": float(high)}


def metric_intervals(per_problem: Sequence[Mapping], keys: Sequence[str], level: float,
                     resamples: int, seed: int) -> dict:
    """`{key + "_ci": {"low", "high"}}` for the mean of each key over per-problem entries."""
    if not keys:
        return {}
    values = np.array([[float(e[k]) for k in keys] for e in per_problem], np.float64)
    low, high = bootstrap_ci(values, level, resamples, seed)
    return {f"{k}_ci": _as_ci(lo, hi) for k, lo, hi in zip(keys, low, high)}


def paired_difference(a: Sequence[Mapping], b: Sequence[Mapping], keys: Sequence[str],
                      level: float, resamples: int, seed: int) -> dict:
    """B - A of each key's mean over problems (entries aligned by position: the same problem at
    the same index), with the paired bootstrap interval when `level` > 0."""
    if len(a) != len(b):
        raise ValueError("paired entries differ in length")
    va = np.array([[float(e[k]) for k in keys] for e in a], np.float64).reshape(len(a), -1)
    vb = np.array([[float(e[k]) for k in keys] for e in b], np.float64).reshape(len(b), -1)
    diff = vb - va
    out = {k: float(d) for k, d in zip(keys, diff.mean(axis=0))}
    if level and keys:
        low, high = bootstrap_ci(diff, level, resamples, seed)
        out.update({f"{k}_ci": _as_ci(lo, hi) for k, lo, hi in zip(keys, low, high)})
    return out


def ci_settings(level: float, resamples: int, seed: int) -> dict | None:
    """What a report records about its intervals (None when they are off)."""
    if not level:
        return None
    return {"level": float(level), "resamples": int(resamples), "seed": int(seed),
            "method": METHOD}


# -------------------------------------------------------------------- probabilistic classifiers


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of `x`, tied values sharing the mean of their ranks."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # start of each run of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]  # one past each run's end
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` for `positive` (ties count half); None when one
    class is absent."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    if scores.shape != positive.shape:
        raise ValueError("scores and labels differ in length")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(average_ranks(scores)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def brier(probs: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Mean squared difference between P(positive) and the 0/1 outcome; None when empty."""
    probs = np.asarray(probs, np.float64)
    outcome = np.asarray(positive, np.float64)
    if probs.shape != outcome.shape:
        raise ValueError("probabilities and labels differ in length")
    return float(np.mean((probs - outcome) ** 2)) if probs.size else None

"""Rewards and returns of CodeRL (SPEC §5), on the host, in numpy.

    outcome (result)     -2 compile error   -1 runtime error   0 failed tests   1 passed
    reward                   -1.0              -0.6               -0.3           +1.0

A sample's sequence return is its reward minus a baseline's: CodeRL's greedy program of the same
problem ("greedy"), or the mean reward of the other samples of the same problem ("mean_others",
GRPO-style, no extra greedy decode), or nothing ("none"). The token-level return multiplies the
sequence return by the critic's probability of the sample's *true* outcome at each decoder
position (CodeRL's `sample_rl_task`), and is zero on padding.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

REWARD_BY_RESULT = {-2: -1.0, -1: -0.6, 0: -0.3, 1: 1.0}
CLASS_NAMES = ("compile error", "runtime error", "failed tests", "passed tests")
BASELINES = ("greedy", "mean_others", "none")


def normalize_result(value) -> int:
    """An outcome code from SPEC §4 ints or CodeRL's JSON (`true`/`false` for passed/failed)."""
    if isinstance(value, bool):
        return 1 if value else 0
    value = int(value)
    if value not in REWARD_BY_RESULT:
        raise ValueError(f"unknown outcome code {value!r}")
    return value


def outcome_class(result, num_classes: int = 4) -> int:
    """Critic class of an outcome: 4-way = result + 2; binary = 1 if passed else 0."""
    r = normalize_result(result)
    if num_classes == 2:
        return int(r == 1)
    if num_classes != 4:
        raise ValueError(f"critic has 2 or 4 classes, not {num_classes}")
    return r + 2


def reward(result) -> float:
    return REWARD_BY_RESULT[normalize_result(result)]


def sequence_returns(problem_ids: Sequence[str], results: Sequence, baseline: str = "greedy",
                     greedy_results: Mapping[str, object] | None = None) -> np.ndarray:
    """Per-sample return = reward - baseline reward.              # [n] -> [n] float32

    "greedy": the greedy program's reward for the same problem (0 when a problem has none, as
    CodeRL does); "mean_others": the mean reward of the *other* samples of the same problem
    (0 when a problem has a single sample); "none": the raw reward.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    rewards = np.array([reward(r) for r in results], dtype=np.float64)
    if baseline == "none":
        return rewards.astype(np.float32)
    if baseline == "greedy":
        greedy_results = greedy_results or {}
        base = np.array([reward(greedy_results[p]) if p in greedy_results else 0.0
                         for p in problem_ids])
        return (rewards - base).astype(np.float32)
    pids = np.asarray(problem_ids, dtype=object)
    out = np.zeros_like(rewards)
    for p in dict.fromkeys(problem_ids):
        idx = np.nonzero(pids == p)[0]
        if len(idx) == 1:
            out[idx] = rewards[idx]
            continue
        total = rewards[idx].sum()
        out[idx] = rewards[idx] - (total - rewards[idx]) / (len(idx) - 1)
    return out.astype(np.float32)


def token_returns(seq_returns: np.ndarray, target_mask: np.ndarray,
                  critic_token_probs: np.ndarray | None = None,
                  true_classes: np.ndarray | None = None) -> np.ndarray:
    """Token-level returns for the RL loss.                          # -> [batch, length]

    seq_returns [b]; target_mask [b, t] (1 on real program tokens, EOS included);
    critic_token_probs [b, t, c] (the critic's per-position class probabilities) and
    true_classes [b] (the sample's outcome class in the critic's class space). Without a critic
    every real token carries the sequence return.
    """
    seq_returns = np.asarray(seq_returns, np.float32)
    mask = np.asarray(target_mask, np.float32)
    if critic_token_probs is None:
        return seq_returns[:, None] * mask
    probs = np.asarray(critic_token_probs, np.float32)
    if probs.shape[:2] != mask.shape:
        raise ValueError(f"critic probs {probs.shape} do not match targets {mask.shape}")
    true_classes = np.asarray(true_classes, np.int64)
    # [b, t, c] -> [b, t]: the probability of the true outcome at each position
    p_true = np.take_along_axis(probs, true_classes[:, None, None], axis=2)[..., 0]
    return seq_returns[:, None] * p_true * mask

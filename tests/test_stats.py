"""Bootstrap intervals, paired differences, AUROC and Brier score (coderl_jax/stats.py) against
direct computations, and the demo's use of them on hand-made rows."""
import itertools

import numpy as np
import pytest

from coderl_jax import stats
from coderl_jax.errors import UserError


def slow_means(values, rows):
    """Mean of values over each resample, one problem at a time."""
    return np.array([[sum(values[j][m] for j in row) / len(row) for m in range(len(values[0]))]
                     for row in rows])


def test_interval_by_hand_on_every_resample_of_two_problems():
    # Problems worth 0 and 1: the 4 equally likely resamples have means 0, .5, .5, 1. The central
    # 50% by linear interpolation: positions 0.75 and 2.25 of the sorted means -> 0.375, 0.625.
    idx = np.array(list(itertools.product(range(2), repeat=2)))
    means = stats.resampled_means(np.array([0.0, 1.0]), idx)
    assert sorted(means) == [0.0, 0.5, 0.5, 1.0]
    low, high = stats.interval(means, 0.5)
    assert (low, high) == (pytest.approx(0.375), pytest.approx(0.625))


def test_interval_equals_enumeration_of_all_resamples():
    values = np.array([[0.0, 1.0], [0.2, 1.0], [0.7, 0.0], [1.0, 1.0]])  # 4 problems, 2 metrics
    idx = np.array(list(itertools.product(range(4), repeat=4)))  # all 256 resamples
    direct = slow_means(values.tolist(), idx.tolist())
    got = stats.resampled_means(values, idx)
    assert got == pytest.approx(direct, rel=1e-12, abs=1e-15)
    low, high = stats.interval(got, 0.9)
    ref_low, ref_high = np.quantile(direct, [0.05, 0.95], axis=0)
    assert low == pytest.approx(ref_low) and high == pytest.approx(ref_high)
    assert np.all(low <= values.mean(0)) and np.all(values.mean(0) <= high)


def test_seeded_bootstrap_equals_a_slow_loop_with_the_same_draws():
    rng = np.random.default_rng(7)
    values = rng.random((13, 3))
    draws = np.random.default_rng(5).integers(0, 13, size=(300, 13), dtype=np.int32)
    ref_low, ref_high = np.quantile(slow_means(values.tolist(), draws.tolist()), [0.05, 0.95],
                                    axis=0)
    low, high = stats.bootstrap_ci(values, 0.9, 300, seed=5)
    assert low == pytest.approx(ref_low, rel=1e-12) and high == pytest.approx(ref_high, rel=1e-12)
    # the same seed repeats exactly, another seed differs, chunking changes nothing
    assert np.array_equal(stats.bootstrap_ci(values, 0.9, 300, seed=5)[0], low)
    assert not np.array_equal(stats.bootstrap_ci(values, 0.9, 300, seed=6)[0], low)
    idx = stats.resample_indices(13, 300, 5)
    assert stats.resampled_means(values, idx, chunk_elements=20) == pytest.approx(
        stats.resampled_means(values, idx), rel=1e-12)
    # one metric as a 1-d array
    one_low, one_high = stats.bootstrap_ci(values[:, 0], 0.9, 300, seed=5)
    assert one_low == pytest.approx(low[0]) and one_high == pytest.approx(high[0])


def test_paired_difference_resamples_the_same_problems_for_both():
    a = [{"m": v} for v in (0.0, 0.5, 0.5, 1.0, 0.0)]
    b = [{"m": v} for v in (0.5, 0.5, 1.0, 1.0, 0.5)]
    out = stats.paired_difference(a, b, ["m"], 0.8, 500, seed=3)
    assert out["m"] == pytest.approx(0.3)
    draws = np.random.default_rng(3).integers(0, 5, size=(500, 5), dtype=np.int32)
    diffs = [np.mean([b[j]["m"] for j in row]) - np.mean([a[j]["m"] for j in row])
             for row in draws]
    ref = np.quantile(diffs, [0.1, 0.9])
    assert (out["m_ci"]["low"], out["m_ci"]["high"]) == (pytest.approx(ref[0]),
                                                         pytest.approx(ref[1]))
    # B never below A: every resampled difference is >= 0; no interval when the level is 0
    assert out["m_ci"]["low"] >= 0
    assert stats.paired_difference(a, b, ["m"], 0, 500, 3) == {"m": pytest.approx(0.3)}


def test_metric_intervals_names_and_bad_settings():
    entries = [{"pass@1": 0.0, "1@5": 1.0}, {"pass@1": 1.0, "1@5": 1.0}]
    out = stats.metric_intervals(entries, ["pass@1", "1@5"], 0.9, 100, 0)
    assert set(out) == {"pass@1_ci", "1@5_ci"}
    assert out["1@5_ci"] == {"low": 1.0, "high": 1.0}
    assert 0.0 <= out["pass@1_ci"]["low"] <= 0.5 <= out["pass@1_ci"]["high"] <= 1.0
    with pytest.raises(UserError, match="--bootstrap must be at least 1"):
        stats.resample_indices(3, 0, 0)


def test_average_ranks_share_ties():
    assert stats.average_ranks([3, 1, 3, 2, 3]).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert stats.average_ranks([0.5, 0.5]).tolist() == [1.5, 1.5]


def test_auroc_by_hand_with_ties():
    # positives 0.9, 0.8, 0.3 against negatives 0.8, 0.3, 0.1: 0.9 beats all 3; 0.8 ties one
    # and beats 2 (2.5); 0.3 loses one, ties one, beats one (1.5) -> 7 of 9 pairs.
    scores = [0.9, 0.8, 0.8, 0.3, 0.3, 0.1]
    positive = [True, True, False, True, False, False]
    assert stats.auroc(scores, positive) == pytest.approx(7 / 9)
    # the pairwise definition on random scores with many ties
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60) / 4
    y = rng.random(60) < 0.4
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in s[y] for n in s[~y]]
    assert stats.auroc(s, y) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert stats.auroc([0.1, 0.9], [False, True]) == 1.0
    assert stats.auroc([0.1, 0.9], [True, False]) == 0.0
    assert stats.auroc([0.3, 0.3], [True, True]) is None  # one class: undefined


def test_brier_by_hand():
    assert stats.brier([0.9, 0.2], [True, False]) == pytest.approx((0.01 + 0.04) / 2)
    assert stats.brier([], []) is None


def test_demo_intervals_and_differences_on_hand_rows():
    from coderl_jax import demo

    def rows(passes):  # problem -> results of its 5 programs
        return [{"problem_id": pid, "result": 1 if i < n else 0}
                for pid, n in passes.items() for i in range(5)]

    warm = rows({"p1": 0, "p2": 1, "p3": 0})
    rl = rows({"p1": 2, "p2": 1, "p3": 1})
    per = {"warmup": demo.per_problem_pass(warm), "offline_rl": demo.per_problem_pass(rl),
           "online_rl": demo.per_problem_pass(warm), "critical_sampling":
           demo.per_problem_pass(rl), "plain_same_budget": demo.per_problem_pass(rl)}
    assert demo.pass_at(warm)["heldout_pass@1"] == pytest.approx(1 / 15)
    ci = demo.pass_intervals(per["warmup"], seed=0)
    assert set(ci) == {"heldout_pass@1_ci", "heldout_pass@5_ci"}
    diffs = demo.pass_differences(per, seed=0)
    assert set(diffs) == {"offline_rl_minus_warmup", "online_rl_minus_warmup",
                          "critical_minus_plain"}
    off = diffs["offline_rl_minus_warmup"]
    assert off["heldout_pass@1"] == pytest.approx((0.4 + 0 + 0.2) / 3)
    assert off["heldout_pass@1_ci"]["low"] >= 0  # no problem got worse
    assert diffs["online_rl_minus_warmup"]["heldout_pass@1_ci"] == {"low": 0.0, "high": 0.0}
    per["plain_same_budget"] = demo.per_problem_pass(rows({"p1": 1, "p2": 1}))
    with pytest.raises(UserError, match="different problems"):
        demo.pass_differences(per, seed=0)

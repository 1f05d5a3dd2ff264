"""Rewards and returns (SPEC §5) against hand computations."""
import numpy as np
import pytest

from coderl_jax.rl import rewards as R


def test_reward_table_and_classes():
    assert [R.reward(r) for r in (-2, -1, 0, 1)] == [-1.0, -0.6, -0.3, 1.0]
    assert R.reward(True) == 1.0 and R.reward(False) == -0.3  # CodeRL's JSON booleans
    assert [R.outcome_class(r) for r in (-2, -1, 0, 1)] == [0, 1, 2, 3]
    assert [R.outcome_class(r, 2) for r in (-2, -1, 0, 1)] == [0, 0, 0, 1]
    with pytest.raises(ValueError):
        R.reward(5)


def test_greedy_baseline_returns():
    pids = ["a", "a", "b", "c"]
    results = [1, -2, 0, -1]
    greedy = {"a": 0, "b": 1}  # c has no greedy program -> baseline 0
    got = R.sequence_returns(pids, results, "greedy", greedy)
    np.testing.assert_allclose(got, [1.0 + 0.3, -1.0 + 0.3, -0.3 - 1.0, -0.6], rtol=1e-6)


def test_mean_others_baseline_returns():
    pids = ["a", "a", "a", "b"]
    results = [1, 0, -2, 1]
    got = R.sequence_returns(pids, results, "mean_others")
    # a: rewards 1, -0.3, -1 ; others' means: (-1.3)/2, 0/2, 0.7/2 ; b alone: its raw reward
    np.testing.assert_allclose(got, [1 + 0.65, -0.3 - 0.0, -1 - 0.35, 1.0], rtol=1e-6)
    np.testing.assert_allclose(R.sequence_returns(pids, results, "none"), [1, -0.3, -1, 1])


def test_token_returns_with_critic_probs():
    seq = np.array([1.3, -0.6], np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    probs = np.zeros((2, 4, 4), np.float32)
    probs[0, :, 3] = [0.5, 0.6, 0.9, 0.7]  # sample 0 passed: class 3
    probs[1, :, 1] = [0.2, 0.4, 0.8, 0.8]  # sample 1 runtime error: class 1
    probs[..., 0] = 1 - probs.sum(-1)
    got = R.token_returns(seq, mask, probs, np.array([3, 1]))
    want = np.array([[1.3 * 0.5, 1.3 * 0.6, 1.3 * 0.9, 0.0], [-0.6 * 0.2, -0.6 * 0.4, 0, 0]])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # without a critic every real token carries the sequence return
    np.testing.assert_allclose(R.token_returns(seq, mask), seq[:, None] * mask)
    with pytest.raises(ValueError):
        R.token_returns(seq, mask, probs[:, :3], np.array([3, 1]))

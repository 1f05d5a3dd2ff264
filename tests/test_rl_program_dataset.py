"""`coderl critic-data` (sample N + greedy, execute, write every form) and `coderl critic-score`,
with a tiny random-weight actor / critic on a few demo problems."""
import json

import jax
import numpy as np
import pytest

from coderl_jax import checkpoint_io
from coderl_jax.cli import main
from coderl_jax.config import CriticConfig, ModelConfig

TINY = ModelConfig(d_model=32, d_ff=64, num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
                   d_kv=16, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                   dropout_rate=0.0)
NUM_PROBLEMS, NUM_SAMPLES = 3, 2


@pytest.fixture(scope="module")
def tok_dir():
    from conftest import TOKENIZER_DIR

    return TOKENIZER_DIR


@pytest.fixture(scope="module")
def critic_data(tmp_path_factory, tok_dir):
    from coderl_jax.models import t5

    tokenizer_dir = tok_dir

    root = tmp_path_factory.mktemp("critic_data")
    checkpoint_io.save_model(root / "actor", t5.init_params(TINY, jax.random.key(1)), TINY)
    out = root / "cd"
    code = main(["critic-data", "--checkpoint", str(root / "actor"), "--problems", "demo",
                 "--split", "train", "--limit", str(NUM_PROBLEMS), "--out", str(out),
                 "--tokenizer", str(tokenizer_dir), "--num-samples", str(NUM_SAMPLES),
                 "--max-new-tokens", "16", "--max-source-len", "128", "--temperature", "1.0"])
    assert code == 0
    return root, out


def test_critic_data_files_in_coderl_layout(critic_data):
    from coderl_jax.data.sources import load_problems
    from coderl_jax.files import read_jsonl
    from coderl_jax.rl.coderl_layout import read_layout
    from coderl_jax.rl.programs import load_greedy_results, load_program_rows
    from coderl_jax.rl.programs_tfds import read_tfds_rows

    _, out = critic_data
    problems = load_problems("demo", "train")[:NUM_PROBLEMS]
    rows = read_jsonl(out / "programs.jsonl")
    greedy = read_jsonl(out / "greedy.jsonl")
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == [
        (p.problem_id, i) for p in problems for i in range(NUM_SAMPLES)]
    assert [r["problem_id"] for r in greedy] == [p.problem_id for p in problems]
    for r in rows + greedy:
        assert r["result"] in (-2, -1, 0, 1) and isinstance(r["error_type"], str)
        assert r["output_ids"] and len(r["output_ids"]) <= 16 and r["prompt_ids"][0] == 1
        assert isinstance(r["tests"], list) and r["seconds"] >= 0
    # CodeRL's layout: one folder per problem, its JSON values for results
    coderl_value = {1: True, 0: False, -1: -1, -2: -2}
    for p in problems:
        gen = json.loads((out / p.problem_id / "gen_solutions.json").read_text())
        mine = [r for r in rows if r["problem_id"] == p.problem_id]
        assert [set(g) for g in gen] == [{"code", "result", "error_type"}] * NUM_SAMPLES
        assert [g["code"] for g in gen] == [r["code"] for r in mine]
        assert [g["result"] for g in gen] == [coderl_value[r["result"]] for r in mine]
        assert all(type(g["result"]) is type(coderl_value[r["result"]])
                   for g, r in zip(gen, mine))
        base = json.loads((out / p.problem_id / "baseline_solutions.json").read_text())
        g_row = next(r for r in greedy if r["problem_id"] == p.problem_id)
        assert base == [{"code": g_row["code"], "result": coderl_value[g_row["result"]]}]
    layout_rows, layout_greedy = read_layout(out)
    assert [(r["problem_id"], r["code"], r["result"]) for r in layout_rows] == [
        (r["problem_id"], r["code"], r["result"]) for r in rows]
    assert layout_greedy == {r["problem_id"]: r["result"] for r in greedy}
    # the TFDS (array_record) copy reads back equal
    keys = ("problem_id", "sample_index", "code", "result", "error_type", "output_ids",
            "prompt_ids")
    assert [{k: r[k] for k in keys} for r in read_tfds_rows(out / "array_record")] == [
        {k: r[k] for k in keys} for r in rows]
    assert [r["result"] for r in read_tfds_rows(out / "array_record", "greedy")] == [
        r["result"] for r in greedy]
    # every form feeds training alike
    assert load_program_rows(out) == rows
    assert [r["code"] for r in load_program_rows(out / "array_record")] == [r["code"] for r in rows]
    assert load_greedy_results(out) == load_greedy_results(out / "greedy.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["outcomes"].values()) == NUM_PROBLEMS * NUM_SAMPLES
    assert summary["greedy"] == NUM_PROBLEMS


def test_critic_score_rows(critic_data, tok_dir, capsys):
    tokenizer_dir = tok_dir
    from coderl_jax.data.prompts import build_prompt, truncate_prompt
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.files import read_jsonl
    from coderl_jax.models.critic import T5Critic, init_critic_params
    from coderl_jax.tokenizer import load_tokenizer

    root, out = critic_data
    critic_cfg = CriticConfig(num_classes=4)
    params = init_critic_params(TINY, critic_cfg, jax.random.key(2))
    checkpoint_io.save_model(root / "critic", params, TINY, critic_cfg)
    scored = {}
    for mode in ("fixed", "paper_faithful"):
        dest = root / f"scored_{mode}.jsonl"
        code = main(["critic-score", "--checkpoint", str(root / "critic"), "--problems", "demo",
                     "--split", "train", "--programs", str(out / "programs.jsonl"),
                     "--out", str(dest), "--tokenizer", str(tokenizer_dir), "--mode", mode,
                     "--max-source-len", "128", "--max-target-len", "12", "--batch-size", "4"])
        assert code == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["programs"] == NUM_PROBLEMS * NUM_SAMPLES
        assert 0.0 <= summary["accuracy"] <= 1.0 and "majority_baseline" in summary
        assert 0.0 <= summary["brier"] <= 1.0 and "auroc" in summary  # of P(passed)
        scored[mode] = read_jsonl(dest)
    rows = read_jsonl(out / "programs.jsonl")
    tok = load_tokenizer(str(tokenizer_dir))
    table = problems_by_id(load_problems("demo", "train"))
    module = T5Critic(TINY, critic_cfg)
    for row, s in zip(rows, scored["fixed"]):
        assert {k: s[k] for k in row} == row  # the input row comes back unchanged
        assert s["program_ids"] == row["output_ids"][:12]
        prompt = truncate_prompt(tok.encode(build_prompt(table[row["problem_id"]])), 128, 2)
        assert s["prompt_ids"] == prompt
        assert len(s["token_probs"]) == len(s["program_ids"])
        np.testing.assert_allclose(np.sum(s["probs"]), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.sum(s["token_probs"], axis=1), 1.0, rtol=1e-5)
        # the reference: the critic module on this single unpadded example
        t = len(s["program_ids"])
        targets = np.array([s["program_ids"]], np.int32)
        dec_in = np.concatenate([[[0]], targets[:, :-1]], axis=1)
        cls, tokl = module.apply({"params": params}, np.array([prompt], np.int32),
                                 np.ones((1, len(prompt)), np.int32), dec_in,
                                 np.ones((1, t), np.int32))
        np.testing.assert_allclose(s["probs"], jax.nn.softmax(cls[0]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s["token_probs"], jax.nn.softmax(tokl[0], axis=-1),
                                   rtol=1e-5, atol=1e-6)
    # CodeRL's way (generate.py --critic_scores): generate.py prompts, programs re-tokenised
    # from their reindented code, EOS-padded unmasked sources, pooling over padding
    from coderl_jax.data.pipeline import coderl_reindent

    for row, s in zip(rows, scored["paper_faithful"]):
        assert s["program_ids"] == s["output_ids"] == tok.encode(coderl_reindent(row["code"]))[:12]
        problem = table[row["problem_id"]]
        assert s["prompt_ids"] == truncate_prompt(tok.encode(build_prompt(problem, "generate")),
                                                  128, 2)
        assert len(s["token_probs"]) == len(s["program_ids"])
    assert any(not np.allclose(a["probs"], b["probs"], atol=1e-6)
               for a, b in zip(scored["fixed"], scored["paper_faithful"]))


def test_critic_commands_reject_bad_input(tmp_path, capsys):
    assert main(["critic-score", "--checkpoint", str(tmp_path / "none"), "--problems", "demo",
                 "--programs", "x.jsonl", "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coderl: error: checkpoint not found") and err.count("\n") == 1
    assert main(["critic-data", "--checkpoint", str(tmp_path), "--problems", "demo",
                 "--out", str(tmp_path / "o"), "--num-samples", "0"]) == 2
    assert "--num-samples must be >= 1" in capsys.readouterr().err
    assert main(["critic-data", "--checkpoint", str(tmp_path), "--problems", "demo",
                 "--out", str(tmp_path / "o"), "--top-k", "-1"]) == 2
    assert "--top-k must be >= 0" in capsys.readouterr().err


def test_critic_data_sampling_flags_reach_the_sampler(tmp_path, monkeypatch):
    """--top-k / --temperature / --top-p / --max-new-tokens become the Sampler's settings; the
    defaults are CodeRL's (top-k 50 and 511 new tokens: transformers 4.16's generate); --harness
    reaches the execution pool."""
    from coderl_jax.inference import sampler as sampler_lib

    seen = []

    class Spy(sampler_lib.Sampler):
        def __init__(self, *a, **kw):
            seen.append((kw["sampling"], kw["max_new_tokens"]))
            super().__init__(*a, **kw)

    monkeypatch.setattr(sampler_lib, "Sampler", Spy)
    from coderl_jax.execution import pool as pool_lib

    harnesses = []

    class PoolSpy(pool_lib.ExecutionPool):
        def __init__(self, *a, **kw):
            harnesses.append(kw.get("harness", "real"))
            super().__init__(*a, **kw)

    from coderl_jax.rl import program_dataset

    monkeypatch.setattr(program_dataset, "ExecutionPool", PoolSpy)  # the pool it builds
    from coderl_jax.models import t5

    checkpoint_io.save_model(tmp_path / "actor", t5.init_params(TINY, jax.random.key(1)), TINY)
    common = ["critic-data", "--checkpoint", str(tmp_path / "actor"), "--problems", "demo",
              "--split", "train", "--limit", "1", "--num-samples", "1", "--no-tfds",
              "--max-source-len", "64", "--no-greedy"]
    assert main(common + ["--out", str(tmp_path / "a"), "--max-new-tokens", "4",
                          "--top-k", "7", "--top-p", "0.5", "--temperature", "0.3",
                          "--harness", "coderl"]) == 0
    assert main(common + ["--out", str(tmp_path / "b")]) == 0
    (a, a_len), (b, b_len) = seen
    assert (a.top_k, a.top_p, a.temperature, a_len) == (7, 0.5, 0.3, 4)
    assert (b.top_k, b.top_p, b.temperature, b_len) == (50, 0.95, 0.6, 511)
    assert harnesses == ["coderl", "real"]

"""`coderl generate` end to end on a tiny random checkpoint: rows, resume, errors."""
import json

import jax
import pytest

from coderl_jax import cli
from coderl_jax.checkpoint_io import save_model
from coderl_jax.config import model_preset
from coderl_jax.inference import sampler as sampler_lib
from coderl_jax.models import t5

N_PROBLEMS = 3
MAX_NEW = 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = model_preset("tiny", dropout_rate=0.0)  # CodeT5's vocabulary, tiny layers
    path = tmp_path_factory.mktemp("ckpt") / "actor"
    save_model(path, t5.init_params(config, jax.random.PRNGKey(0)), config)
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir_module):
    from coderl_jax.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir_module)


@pytest.fixture(scope="module")
def tokenizer_dir_module():
    from conftest import TOKENIZER_DIR

    return TOKENIZER_DIR


def _generate(checkpoint, tok_dir, out, *extra, src="demo"):
    argv = ["generate", "--checkpoint", str(checkpoint), "--tokenizer", str(tok_dir),
            "--problems", src, "--out", str(out), "--max-new-tokens", str(MAX_NEW),
            "--limit", str(N_PROBLEMS), *extra]
    return cli.main(argv)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _key(rows):
    return {(r["problem_id"], r["sample_index"]): r for r in rows}


@pytest.fixture(scope="module")
def sampled(checkpoint, tokenizer_dir_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "samples.jsonl"
    assert _generate(checkpoint, tokenizer_dir_module, out, "--num-samples", "3",
                     "--temperature", "0.8", "--top-p", "0.95", "--seed", "4") == 0
    return out


def test_rows_follow_spec(sampled, tokenizer):
    from coderl_jax.data.prompts import build_prompt
    from coderl_jax.data.sources import load_problems

    rows = _rows(sampled)
    assert len(rows) == N_PROBLEMS * 3
    problems = {p.problem_id: p for p in load_problems("demo")[:N_PROBLEMS]}
    assert {(r["problem_id"], r["sample_index"]) for r in rows} == \
        {(pid, i) for pid in problems for i in range(3)}
    assert not sampled.with_name(sampled.name + ".partial").exists()
    for r in rows:
        assert set(r) >= {"problem_id", "sample_index", "prompt_ids", "output_ids", "code",
                          "logprob"}
        assert r["prompt_ids"] == tokenizer.encode(build_prompt(problems[r["problem_id"]]))
        ids = r["output_ids"]
        assert 1 <= len(ids) <= MAX_NEW
        assert tokenizer.eos_id not in ids[:-1]  # ends at (and includes) EOS if produced
        assert len(ids) == MAX_NEW or ids[-1] == tokenizer.eos_id
        assert r["code"] == tokenizer.decode(ids)
        assert isinstance(r["logprob"], float) and r["logprob"] < 0


def test_same_seed_same_rows_and_greedy_is_deterministic(sampled, checkpoint,
                                                         tokenizer_dir_module, tmp_path):
    again = tmp_path / "again.jsonl"
    assert _generate(checkpoint, tokenizer_dir_module, again, "--num-samples", "3",
                     "--temperature", "0.8", "--top-p", "0.95", "--seed", "4",
                     "--batch-size", "16") == 0
    a, b = _key(_rows(sampled)), _key(_rows(again))
    assert {k: v["output_ids"] for k, v in a.items()} == {k: v["output_ids"] for k, v in b.items()}
    g1, g2 = tmp_path / "g1.jsonl", tmp_path / "g2.jsonl"
    assert _generate(checkpoint, tokenizer_dir_module, g1, "--greedy") == 0
    assert _generate(checkpoint, tokenizer_dir_module, g2, "--temperature", "0",
                     "--seed", "9") == 0
    r1, r2 = _rows(g1), _rows(g2)
    assert len(r1) == N_PROBLEMS and [r["sample_index"] for r in r1] == [0] * N_PROBLEMS
    assert [r["output_ids"] for r in r1] == [r["output_ids"] for r in r2]


def test_resume_after_interruption(sampled, checkpoint, tokenizer_dir_module, tmp_path,
                                   monkeypatch):
    out = tmp_path / "out.jsonl"
    args = ("--num-samples", "3", "--temperature", "0.8", "--top-p", "0.95", "--seed", "4")
    real = sampler_lib.Sampler.sample

    def interrupted(self, requests, seed=0):
        for i, s in enumerate(real(self, requests, seed=seed)):
            if i == 4:
                raise KeyboardInterrupt
            yield s

    monkeypatch.setattr(sampler_lib.Sampler, "sample", interrupted)
    assert _generate(checkpoint, tokenizer_dir_module, out, *args) == 130
    monkeypatch.setattr(sampler_lib.Sampler, "sample", real)
    part = out.with_name(out.name + ".partial")
    assert not out.exists() and len(_rows(part)) == 4
    # a row cut off mid-write is dropped on resume
    with open(part, "a") as f:
        f.write('{"problem_id": "demo-train-x", "sample_ind')
    assert _generate(checkpoint, tokenizer_dir_module, out, *args, "--resume") == 0
    assert not part.exists()
    rows = _rows(out)
    assert len(rows) == N_PROBLEMS * 3
    want = _key(_rows(sampled))
    assert {k: v["output_ids"] for k, v in _key(rows).items()} == \
        {k: v["output_ids"] for k, v in want.items()}
    # resuming a finished run with more samples keeps the old rows and adds the new ones
    assert _generate(checkpoint, tokenizer_dir_module, out, "--num-samples", "4",
                     *args[2:], "--resume") == 0
    more = _key(_rows(out))
    assert len(more) == N_PROBLEMS * 4
    for k, v in want.items():
        assert more[k]["output_ids"] == v["output_ids"]


def test_resume_refuses_a_corrupt_file(checkpoint, tokenizer_dir_module, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.with_name(out.name + ".partial").write_text("not json\n{}\n")
    assert _generate(checkpoint, tokenizer_dir_module, out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coderl: error:") and "cannot resume" in err and "\n" not in err


def test_mbpp_source(checkpoint, tokenizer_dir_module, tmp_path):
    from conftest import data_path

    mbpp = data_path("mbpp", "mbpp.jsonl")
    out = tmp_path / "mbpp.jsonl"
    assert _generate(checkpoint, tokenizer_dir_module, out, "--greedy", src=str(mbpp)) == 0
    rows = _rows(out)
    assert len(rows) == N_PROBLEMS and all(r["problem_id"].isdigit() for r in rows)


def test_humaneval_code_is_prompt_plus_completion(checkpoint, tokenizer_dir_module, tokenizer,
                                                  tmp_path):
    from coderl_jax.data.sources import load_problems

    out = tmp_path / "he.jsonl"
    assert _generate(checkpoint, tokenizer_dir_module, out, "--greedy", src="humaneval") == 0
    problems = {p.problem_id: p for p in load_problems("humaneval")}
    for r in _rows(out):
        assert r["problem_id"].startswith("HumanEval/")
        assert r["code"] == problems[r["problem_id"]].prompt_text + \
            tokenizer.decode(r["output_ids"])


@pytest.mark.parametrize("extra, message", [
    (("--num-samples", "0"), "--num-samples"),
    (("--temperature", "-1"), "--temperature"),
    (("--top-p", "1.5"), "--top-p"),
    (("--top-k", "-3"), "--top-k"),
    (("--max-new-tokens", "0"), "--max-new-tokens"),
    (("--batch-size", "0"), "--batch-size"),
    (("--greedy", "--num-samples", "5"), "--greedy"),
])
def test_bad_numbers_are_one_line_errors(checkpoint, tokenizer_dir_module, tmp_path, capsys,
                                         extra, message):
    assert _generate(checkpoint, tokenizer_dir_module, tmp_path / "o.jsonl", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coderl: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_checkpoint_and_unknown_source(checkpoint, tokenizer_dir_module, tmp_path,
                                               capsys):
    assert _generate(tmp_path / "nope", tokenizer_dir_module, tmp_path / "o.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint not found" in err and "\n" not in err
    assert _generate(checkpoint, tokenizer_dir_module, tmp_path / "o.jsonl",
                     src=str(tmp_path / "missing_src")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coderl: error:") and "problems not found" in err and "\n" not in err
    # a non-numeric value is an argparse one-liner
    with pytest.raises(SystemExit) as e:
        _generate(checkpoint, tokenizer_dir_module, tmp_path / "o.jsonl", "--top-p", "x")
    assert e.value.code == 2


def test_prompt_style_generate_encodes_coderl_generate_prompt(checkpoint, tokenizer_dir_module,
                                                              tokenizer, tmp_path):
    """--prompt-style generate feeds the prompt CodeRL's generate.py builds, which differs from
    the training prompt the default feeds."""
    from coderl_jax.data.prompts import build_prompt
    from coderl_jax.data.sources import load_problems

    problems = {p.problem_id: p for p in load_problems("demo")[:N_PROBLEMS]}
    for style in ("train", "generate"):
        out = tmp_path / f"{style}.jsonl"
        assert _generate(checkpoint, tokenizer_dir_module, out, "--greedy",
                         "--prompt-style", style) == 0
        for row in _rows(out):
            want = tokenizer.encode(build_prompt(problems[row["problem_id"]], style))
            assert row["prompt_ids"] == want[:600]
    assert build_prompt(next(iter(problems.values())), "generate") != \
        build_prompt(next(iter(problems.values())), "train")

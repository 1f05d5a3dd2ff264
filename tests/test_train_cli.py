"""`coderl train` end to end on real APPS problems, and `coderl benchmark train`."""
from __future__ import annotations

import json

import pytest

from coderl_jax.cli import main
from coderl_jax.train.metrics import read_metrics

from conftest import REPO, data_path

SMALL = ["--config.model.num_encoder_layers=1", "--config.model.num_decoder_layers=1",
         "--config.model.d_model=32", "--config.model.d_ff=64", "--config.model.d_kv=8",
         "--config.data.max_source_len=32", "--config.data.max_target_len=32",
         "--config.train.batch_size=8", "--config.train.log_every=1",
         "--config.checkpoint.every_steps=1", "--no-progress"]


def _train(workdir, *extra, tokenizer_dir):
    apps = data_path("apps", "train")
    return main(["train", "--config", str(REPO / "configs" / "tiny.py"), "--workdir",
                 str(workdir), f"--config.data.problems={apps}",
                 "--config.data.tokenizer", str(tokenizer_dir), *SMALL, *extra])


def test_train_warmup_writes_everything_and_resumes(tmp_path, tokenizer_dir, capsys):
    from coderl_jax import checkpoint_io

    workdir = tmp_path / "run"
    assert _train(workdir, "--config.train.num_steps=2", tokenizer_dir=tokenizer_dir) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stage"] == "warmup" and summary["steps_run"] == 2
    assert summary["loss"] > 0 and summary["tokens_per_s"] > 0
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [1, 2]
    assert {"loss", "accuracy", "grad_norm", "learning_rate", "tokens_per_s"} <= set(rows[0])
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == \
        ["1", "2"]
    params, model_cfg, critic_cfg = checkpoint_io.load_model(workdir / "model")
    assert model_cfg.d_model == 32 and model_cfg.vocab_size == 32100 and critic_cfg is None
    # the same command again: everything is done, it resumes at step 2 and runs nothing
    assert _train(workdir, "--config.train.num_steps=2", tokenizer_dir=tokenizer_dir) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["start_step"] == 2 and again["steps_run"] == 0
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2]


@pytest.mark.parametrize("override,message", [
    ("--config.train.nonsense=1", "unknown config key 'train.nonsense'"),
    ("--config.train.stage=pretrain", "unknown stage 'pretrain'"),
    ("--config.mesh.ici_parallelism=(3,1,1)", "ici_parallelism"),
])
def test_bad_config_is_one_line_error(tmp_path, tokenizer_dir, capsys, override, message):
    assert _train(tmp_path / "bad", override, tokenizer_dir=tokenizer_dir) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coderl: error:") and message in err and "\n" not in err


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.py"), "--workdir",
                 str(tmp_path)]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["critic", "offline_rl"])
def test_critic_and_offline_rl_stages_run(tmp_path, tokenizer_dir, capsys, stage):
    """Executed-program rows feed the critic; rows with returns feed offline RL (zipped with
    ground truth for the CE half), both starting from a warm-up workdir."""
    from coderl_jax.data.sources import load_problems
    from coderl_jax.files import write_jsonl

    problems = load_problems(str(data_path("apps", "train")))
    rows = []
    for p in problems:
        for k, code in enumerate(p.solutions[:4]):
            rows.append({"problem_id": p.problem_id, "code": code, "result": 1, "return": 1.0})
            rows.append({"problem_id": p.problem_id, "code": code[: len(code) // 2],
                         "result": -2, "return": -1.0})
    programs = tmp_path / "programs.jsonl"
    write_jsonl(programs, rows)
    warm = tmp_path / "warm"
    assert _train(warm, "--config.train.num_steps=1", tokenizer_dir=tokenizer_dir) == 0
    workdir = tmp_path / stage
    extra = ["--config.rl.baseline=none"] if stage == "offline_rl" else []
    assert _train(workdir, "--config.train.num_steps=2", f"--config.train.stage={stage}", *extra,
                  f"--config.data.programs={programs}", f"--config.train.init_checkpoint={warm}",
                  tokenizer_dir=tokenizer_dir) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stage"] == stage and summary["steps_run"] == 2
    rows = [r for r in read_metrics(workdir) if "loss" in r]  # (the critic adds eval rows)
    assert [r["step"] for r in rows] == [1, 2], rows
    if stage == "offline_rl":
        assert "rl_loss" in rows[0] and "ce_loss" in rows[0] and rows[0]["ce_loss"] > 0


def test_benchmark_train_json(capsys):
    pytest.importorskip("torch")
    assert main(["benchmark", "train", "--size", "tiny", "--batch", "8", "--src-len", "8",
                 "--tgt-len", "8", "--steps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("tokens_per_s", "reference_tokens_per_s", "ratio", "peak_host_memory_mb",
                "compile_seconds", "reference_peak_host_memory_mb"):
        assert result[key] > 0, key
    assert result["dtype"] == result["reference_dtype"] == "float32"
    # JAX runs on the CPU here, so the reference does too (same hardware on both sides)
    assert result["backend"] == "cpu" and result["reference_device"] == "cpu"
    assert result["ratio"] == pytest.approx(result["tokens_per_s"] /
                                            result["reference_tokens_per_s"])
    # both sides start from random weights over 32100 tokens: loss near ln(32100) ~ 10.38
    assert 9.0 < result["first_loss"] < 12.0 and 9.0 < result["reference_first_loss"] < 12.0

"""Offline and online RL through `train_stage` end to end on 8 simulated devices (tiny model,
demo problems, the real sandbox), resume, and the online loop's overlap of execution with
device work."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from coderl_jax import checkpoint_io
from coderl_jax.config import CriticConfig, ModelConfig
from coderl_jax.data.demo import build_demo
from coderl_jax.train.metrics import read_metrics
from coderl_jax.train.run import base_config, run_config, train_stage

TINY = ModelConfig(d_model=32, d_ff=64, num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
                   d_kv=16, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                   dropout_rate=0.0)


@pytest.fixture(scope="module")
def tok_dir():
    from conftest import TOKENIZER_DIR

    return TOKENIZER_DIR


@pytest.fixture(scope="module")
def critic_ckpt(tmp_path_factory):
    from coderl_jax.models.critic import init_critic_params

    path = tmp_path_factory.mktemp("critic") / "model"
    critic_cfg = CriticConfig(num_classes=4)
    checkpoint_io.save_model(path, init_critic_params(TINY, critic_cfg, jax.random.key(3)), TINY,
                             critic_cfg)
    return path


def _config(stage, tok_dir, **overrides):
    cfg = base_config("tiny", stage)
    cfg.model = ml_collections.ConfigDict({f: getattr(TINY, f) for f in (
        "d_model", "d_ff", "num_encoder_layers", "num_decoder_layers", "num_heads", "d_kv",
        "relative_attention_num_buckets", "relative_attention_max_distance", "dropout_rate")})
    cfg.train.batch_size = 8
    cfg.train.log_every = 1
    cfg.train.dropout = False
    cfg.optimizer.learning_rate = 1e-3
    cfg.optimizer.schedule = "constant"
    cfg.checkpoint.every_steps = 1
    cfg.checkpoint.async_save = False
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.tokenizer = str(tok_dir)
    cfg.data.max_source_len = 128
    cfg.data.max_target_len = 32
    for key, value in overrides.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return run_config(cfg)


def _executed_rows(tmp_path):
    """References (passed), near misses (failed) and broken programs of a few demo problems,
    executed in the sandbox; the first program of each problem doubles as its greedy one."""
    from coderl_jax.execution.pool import ExecutionPool
    from coderl_jax.files import write_jsonl

    items = [it for it in build_demo() if it.problem.split == "train"][:4]
    rows = []
    for it in items:
        p = it.problem
        for code in (p.solutions[0], *it.near_misses[:1], p.solutions[0].replace("(", "", 1)):
            rows.append({"problem_id": p.problem_id, "sample_index": len(rows), "code": code})
    with ExecutionPool(workers=2, timeout=4.0) as pool:
        results = pool.run({it.problem.problem_id: it.problem for it in items}, rows)
    rows = [dict(r, result=res["result"], error_type=res["error_type"])
            for r, res in zip(rows, results)]
    assert {r["result"] for r in rows} >= {1, 0, -2}
    write_jsonl(tmp_path / "programs.jsonl", rows)
    write_jsonl(tmp_path / "greedy.jsonl", [rows[i] for i in range(0, len(rows), 3)])
    return rows


def test_offline_rl_iteration_on_8_devices(tmp_path, tok_dir, critic_ckpt):
    _executed_rows(tmp_path)
    run = _config("offline_rl", tok_dir, train__num_steps=1, mesh__ici_parallelism=(2, 2, 2),
                  data__programs=str(tmp_path / "programs.jsonl"),
                  rl__critic_checkpoint=str(critic_ckpt))
    result = train_stage(run, tmp_path / "w", progress=False)
    assert result.steps_run == 1
    (row,) = [m for m in read_metrics(tmp_path / "w") if "rl_loss" in m]
    assert row["step"] == 1 and np.isfinite(row["rl_loss"]) and row["ce_loss"] > 0
    assert row["mean_return"] != 0.0  # critic-weighted relative returns reached the step
    scored = [json.loads(line) for line in open(tmp_path / "w" / "offline_programs.jsonl")]
    assert all(len(r["token_probs"]) == len(r["program_ids"]) for r in scored)
    params, model_cfg, critic_cfg = checkpoint_io.load_model(tmp_path / "w" / "model")
    assert critic_cfg is None and model_cfg.d_model == TINY.d_model


@pytest.mark.slow
def test_online_rl_iteration_on_8_devices_and_resume(tmp_path, tok_dir, critic_ckpt, capsys):
    common = dict(rl__num_samples=2, rl__max_new_tokens=16, rl__critic_checkpoint=str(critic_ckpt),
                  rl__critic_refresh_every=1)
    run = _config("online_rl", tok_dir, train__num_steps=1, **common)
    assert run.mesh.ici_parallelism == (-1, 1, 1) and len(jax.devices()) == 8
    result = train_stage(run, tmp_path / "w", progress=False)
    assert result.steps_run == 1 and np.isfinite(result.last_metrics["rl_loss"])
    out = capsys.readouterr().out
    assert "online RL: 1 iterations" in out and "device idle fraction" in out
    stats = json.loads((tmp_path / "w" / "online_stats.json").read_text())
    assert stats["iterations"] == 1 and stats["cache_hits"] + stats["cache_misses"] == 8 + 4
    online = [m for m in read_metrics(tmp_path / "w") if "online/pass_rate" in m]
    assert online and 0.0 <= online[0]["online/pass_rate"] <= 1.0
    assert (tmp_path / "w" / "critic_refreshed" / "model_config.json").is_file()
    # resume: the second run restores step 1 (params + the source's position) and runs one more
    run = _config("online_rl", tok_dir, train__num_steps=2, **common)
    result = train_stage(run, tmp_path / "w", progress=False)
    assert result.start_step == 1 and result.steps_run == 1
    assert json.loads((tmp_path / "w" / "online_stats.json").read_text())["iterations"] == 1


@pytest.mark.slow
def test_online_overlap_cuts_device_idle_time(tmp_path, tok_dir, capsys, monkeypatch):
    """The random actor's programs fail to compile in milliseconds, far faster than real unit
    tests run; each batch's execution here (the real pool) is held back 0.4 s longer, as a suite
    of real tests would take, so there is sandbox time for the loop to hide."""
    import concurrent.futures
    import threading

    from coderl_jax.execution import pool as pool_mod

    real_pool = pool_mod.ExecutionPool

    class SlowPool(real_pool):
        def submit(self, *args, **kwargs):
            inner = super().submit(*args, **kwargs)
            outer = concurrent.futures.Future()

            def finish():
                results = inner.result()
                threading.Event().wait(0.4)
                outer.set_result(results)

            threading.Thread(target=finish, daemon=True).start()
            return outer

    monkeypatch.setattr(pool_mod, "ExecutionPool", SlowPool)
    waits = {}
    for depth in (0, 1):
        run = _config("online_rl", tok_dir, train__num_steps=6, rl__num_samples=4,
                      rl__max_new_tokens=48, rl__overlap_depth=depth, checkpoint__every_steps=0,
                      rl__baseline="greedy", data__max_target_len=48)
        train_stage(run, tmp_path / f"d{depth}", progress=False)
        stats = json.loads((tmp_path / f"d{depth}" / "online_stats.json").read_text())
        waits[depth] = stats["wait_s"]
        assert stats["iterations"] == 6 and stats["measured_iterations"] == 5
        assert f"overlap depth {depth}: device idle fraction" in capsys.readouterr().out
    print("host blocked on the sandbox: serial", waits[0], "s, overlapped", waits[1], "s")
    # serial: each of the 5 measured iterations waits out its execution's 0.4 s hold from the
    # moment it is submitted (seconds, not a fraction of wall time: a loaded machine stretches
    # the device work and so shrinks the fraction, never the held-back time)
    assert waits[0] >= 5 * 0.4 * 0.9
    assert waits[1] < 0.5 * waits[0]  # overlapped: the device's work hides most of it

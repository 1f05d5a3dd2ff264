"""Online RL, critic data and critical sampling on 2 processes x 2 CPU devices (gloo over
127.0.0.1) equal 1 process x 4 devices: same losses and returns per step and final params, the
same rows; each process ran its own sandbox pool on its own share of the problems."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from online_multihost_worker import run_critic_data, run_critical, run_online
from two_processes import run_two_processes

from coderl_jax import checkpoint_io
from coderl_jax.train.metrics import read_metrics

from train_helpers import mesh_devices

STEPS = 3
ICI = (2, 1, 2)  # data across the two hosts, model across each host's two devices


def _two_processes(args: list[str]) -> list[str]:
    return run_two_processes("online_multihost_worker.py", args, timeout=600)


def _critic(tmp_path) -> str:
    """A random critic of the tiny online config's model."""
    from online_multihost_worker import online_run

    from coderl_jax.config import CriticConfig
    from coderl_jax.models.critic import init_critic_params

    model, head = online_run(STEPS, ICI).model, CriticConfig(num_classes=4)
    path = tmp_path / "critic"
    checkpoint_io.save_model(path, init_critic_params(model, head, jax.random.key(3)), model,
                             head)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("with_critic", [False, True], ids=["plain", "critic"])
def test_online_rl_two_processes_equal_one(tmp_path, with_critic):
    """With a critic each process scores its own programs as its part of a global critic batch,
    and the critic refresh (every 2 steps) trains on every process's rows."""
    critic = _critic(tmp_path) if with_critic else None
    multi = tmp_path / "multi"
    outputs = _two_processes(["online", str(multi), "--steps", str(STEPS),
                              "--ici", ",".join(map(str, ICI))]
                             + (["--critic", critic] if critic else []))
    assert all(f"steps 0->{STEPS}" in out for out in outputs)
    assert "slowest host: process" in outputs[0]
    single = tmp_path / "single"
    run_online(single, STEPS, ICI, devices=mesh_devices(ICI), critic=critic)
    if with_critic:
        assert (multi / "critic_refreshed" / "model_config.json").is_file()

    got = [m for m in read_metrics(multi) if "loss" in m]
    want = [m for m in read_metrics(single) if "loss" in m]
    assert [m["step"] for m in got] == [m["step"] for m in want] == list(range(1, STEPS + 1))
    for key in ("loss", "rl_loss", "ce_loss", "mean_return"):
        np.testing.assert_allclose([m[key] for m in got], [m[key] for m in want], rtol=1e-4,
                                   atol=1e-6, err_msg=key)
    assert any(m["mean_return"] != 0.0 for m in want)  # returns reached the step
    online_got = [m for m in read_metrics(multi) if "online/pass_rate" in m]
    online_want = [m for m in read_metrics(single) if "online/pass_rate" in m]
    assert len(online_got) == len(online_want) == STEPS
    for key in ("online/pass_rate", "online/mean_reward", "online/greedy_pass_rate",
                "online/outcome/compile error"):  # gathered from both hosts by process 0
        np.testing.assert_allclose([m[key] for m in online_got], [m[key] for m in online_want],
                                   err_msg=key)
    assert all(m["online/slowest_host"] in (0.0, 1.0) for m in online_got)
    a, _, _ = checkpoint_io.load_model(multi / "model")
    b, _, _ = checkpoint_io.load_model(single / "model")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)

    stats = json.loads((multi / "online_stats.json").read_text())
    ref = json.loads((single / "online_stats.json").read_text())
    hosts = stats["hosts"]
    assert [h["process"] for h in hosts] == [0, 1] and stats["slowest_host"] in (0, 1)
    assert len({h["pid"] for h in hosts}) == 2  # two processes, each with its own pool
    # each pool judged its own half: one problem x (4 samples + 1 greedy) per step
    assert [h["programs"] for h in hosts] == [STEPS * 5, STEPS * 5]
    assert all(h["cache_hits"] + h["cache_misses"] == h["programs"] for h in hosts)
    assert stats["programs"] == ref["programs"] == STEPS * 10


def _rows(path):
    """Written rows without their timing."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_critic_data_two_processes_write_the_rows_of_one(tmp_path):
    from coderl_jax.models import t5

    from train_helpers import TINY

    actor = tmp_path / "actor"
    checkpoint_io.save_model(actor, t5.init_params(TINY, jax.random.key(1)), TINY)
    outputs = _two_processes(["critic-data", str(tmp_path / "multi"), "--actor", str(actor),
                              "--ici", ",".join(map(str, ICI))])
    summary = json.loads(outputs[0].split("summary ", 1)[1].splitlines()[0])
    single = run_critic_data(tmp_path / "single", str(actor), ICI, devices=mesh_devices(ICI))
    for name in ("programs.jsonl", "greedy.jsonl"):
        got, want = _rows(tmp_path / "multi" / name), _rows(tmp_path / "single" / name)
        assert got == want and len(want) == (6 if name == "programs.jsonl" else 3)
    hosts = summary["hosts"]
    assert len({h["pid"] for h in hosts}) == 2
    # 3 problems: process 0 executed 2 of them (2 samples + greedy each), process 1 one
    assert [h["cache_hits"] + h["cache_misses"] for h in hosts] == [6, 3]
    assert summary["outcomes"] == single["outcomes"]


@pytest.mark.slow
def test_critical_sampling_two_processes_give_the_rows_of_one(tmp_path):
    _two_processes(["critical", str(tmp_path / "multi.json"), "--ici", ",".join(map(str, ICI))])
    got = json.loads((tmp_path / "multi.json").read_text())
    want, _ = run_critical(ICI, devices=mesh_devices(ICI))
    assert len(got["rows"]) == len(want) == 3 * 4 * 2
    assert {r["origin"] for r in want} > {"sample"}  # a refine or repair round ran
    for a, b in zip(got["rows"], want):
        assert a.pop("critic_score") == pytest.approx(b.pop("critic_score"), rel=1e-5)
        assert {k: v for k, v in a.items() if k != "seconds"} == \
            {k: v for k, v in b.items() if k != "seconds"}
    (pid0, judged0), (pid1, judged1) = got["pools"]
    assert pid0 != pid1 and judged0 > 0 and judged1 > 0  # each process ran its own pool

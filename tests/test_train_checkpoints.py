"""Checkpoints: resume continues the same trajectory, incomplete saves are ignored, restore onto
another mesh, keep-last-K + best, and the workdir readable by checkpoint_io.load_model."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coderl_jax.config import CheckpointConfig
from coderl_jax.errors import UserError
from coderl_jax.train import checkpoints as ck
from coderl_jax.train.metrics import read_metrics

from multihost_worker import build_trainer, host_source
from train_helpers import mesh_devices

STEPS = 4
ICI = (8, 1, 1)
REPO = Path(__file__).resolve().parents[1]


def _losses(workdir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(workdir)]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """One Trainer (one compiled step) reused across workdirs: fit() reopens its checkpoints
    and logs from `trainer.workdir` each time, as a restarted process would."""
    return build_trainer(tmp_path_factory.mktemp("unused"), STEPS, every=2, ici=ICI,
                         devices=mesh_devices(ICI))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, trainer):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    trainer.workdir = workdir
    result = trainer.fit(host_source(trainer))
    assert (result.start_step, result.steps_run) == (0, STEPS)
    return workdir, result


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, trainer):
    """Stopped after 2 steps, an incomplete save of step 3 left behind, then resumed to 4."""
    workdir = tmp_path_factory.mktemp("resumed")
    trainer.workdir = workdir
    first = trainer.fit(host_source(trainer), num_steps=2)
    assert first.steps_run == 2
    # what a kill in the middle of saving step 3 leaves: orbax's temporary folder, half written
    partial = workdir / "checkpoints" / "3.orbax-checkpoint-tmp-1700000000000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\0" * 10)
    # and a metrics row past the last checkpoint, half written
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 99.0}\n{"step": 4, "lo')
    source = host_source(trainer)  # a fresh iterator: its position comes from the checkpoint
    second = trainer.fit(source)
    return workdir, first, second, source


def test_resumed_run_continues_the_same_loss_trajectory(uninterrupted, resumed):
    ref_dir, ref = uninterrupted
    workdir, first, second, source = resumed
    assert (second.start_step, second.steps_run) == (2, 2)
    assert source.position == STEPS  # the data iterator resumed at batch 2, not 0
    want, got = _losses(ref_dir), _losses(workdir)
    assert [s for s, _ in got] == [1, 2, 3, 4]
    np.testing.assert_allclose([l for _, l in got], [l for _, l in want], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(second.state.params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    steps = ck.Checkpointer(workdir, read_only=True).all_steps()
    assert steps == [2, 4]
    assert not any(".orbax-checkpoint-tmp" in p.name for p in (workdir / "checkpoints").iterdir())


def test_checkpoint_restores_onto_another_mesh(uninterrupted):
    workdir, ref = uninterrupted
    for ici in [(2, 2, 2), (1, 1, 1)]:
        trainer = build_trainer(workdir, STEPS, every=2, ici=ici, devices=mesh_devices(ici))
        source = host_source(trainer)
        state, step = trainer.initial_state(source)
        trainer.close()
        assert step == STEPS and int(state.step) == STEPS and source.position == STEPS
        emb = state.params["token_embedder"]["embedding"]
        assert emb.sharding.mesh.shape == trainer.mesh.shape
        assert len(emb.sharding.device_set) == int(np.prod(ici))
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref.state)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_io_reads_the_workdir(uninterrupted):
    from coderl_jax import checkpoint_io

    from train_helpers import TINY

    workdir, ref = uninterrupted
    params, model_cfg, critic_cfg = checkpoint_io.load_model(workdir)
    assert model_cfg == TINY and critic_cfg is None
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError, match="no training checkpoint"):
        ck.load_params(workdir / "nothing-here")


def test_keeps_last_k_and_the_best(tmp_path):
    state = {"w": jnp.arange(4.0)}
    losses = {1: 5.0, 2: 1.0, 3: 3.0, 4: 4.0, 5: 4.5}
    with ck.Checkpointer(tmp_path, CheckpointConfig(keep=2, keep_best=True)) as c:
        for step, loss in losses.items():
            c.save(step, jax.tree.map(lambda x: x + step, state), metrics={"loss": loss})
        c.wait()
        assert c.all_steps() == [2, 4, 5]
        assert c.best_step() == 2
    # after a restart the best is still known (metrics are on disk) and still kept
    with ck.Checkpointer(tmp_path, CheckpointConfig(keep=2, keep_best=True)) as c:
        c.save(6, state, metrics={"loss": 2.0})
        c.wait()
        assert c.all_steps() == [2, 5, 6] and c.best_step() == 2
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                             sharding=x.sharding), state)
        restored, step = c.restore(target, step=2)
        assert step == 2
        np.testing.assert_array_equal(restored["w"], np.arange(4.0) + 2)


def test_restore_without_checkpoint_is_a_user_error(tmp_path):
    with ck.Checkpointer(tmp_path) as c:
        with pytest.raises(UserError, match="no complete checkpoint"):
            c.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)})


@pytest.mark.slow
def test_killed_run_restarts_from_last_complete_checkpoint(tmp_path):
    """SIGKILL a real training process while it checkpoints every step, restart it, and get
    the uninterrupted run's losses."""
    steps = 8
    workdir = tmp_path / "killed"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    env.pop("CODERL_MULTIHOST", None)
    cmd = [sys.executable, str(REPO / "tests" / "multihost_worker.py"), str(workdir),
           "--steps", str(steps), "--every", "1", "--ici", ",".join(map(str, ICI))]
    proc = subprocess.Popen(cmd + ["--delay", "0.3"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    ckpts = workdir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and sum(p.name.isdigit() for p in ckpts.iterdir()) >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.15)  # land somewhere inside the next step or its save
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ck.Checkpointer(workdir, read_only=True).latest_step()
    assert killed_at is not None and 2 <= killed_at < steps
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"steps {killed_at}->{steps}" in done.stdout
    reference = tmp_path / "reference"
    trainer = build_trainer(reference, steps, every=0, ici=ICI, devices=mesh_devices(ICI))
    trainer.fit(host_source(trainer))
    got, want = _losses(workdir), _losses(reference)
    assert [s for s, _ in got] == list(range(1, steps + 1))
    np.testing.assert_allclose([l for _, l in got], [l for _, l in want], rtol=1e-5)

"""Two processes x 2 CPU devices (gloo collectives over 127.0.0.1) train exactly like one
process with 4 devices: same losses, same checkpointed params."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from two_processes import run_two_processes

from coderl_jax.train import checkpoints as ck
from coderl_jax.train.metrics import read_metrics

from multihost_worker import build_trainer, host_source
from train_helpers import mesh_devices

STEPS = 3
ICI = (2, 1, 2)  # data across the two hosts, model across each host's two devices


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    workdir = tmp_path / "multihost"
    outputs = run_two_processes("multihost_worker.py", [
        str(workdir), "--steps", str(STEPS), "--every", "2", "--ici", ",".join(map(str, ICI))],
        timeout=420)
    assert f"steps 0->{STEPS}" in outputs[0] and f"steps 0->{STEPS}" in outputs[1]

    reference = tmp_path / "single"
    trainer = build_trainer(reference, STEPS, every=2, ici=ICI, devices=mesh_devices(ICI))
    ref = trainer.fit(host_source(trainer))

    got, want = read_metrics(workdir), read_metrics(reference)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))  # process 0 alone logged
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in got], [r["grad_norm"] for r in want],
                               rtol=1e-5)
    # the checkpoint both processes wrote together holds the same params
    assert ck.Checkpointer(workdir, read_only=True).all_steps() == [2, STEPS]
    params, meta = ck.load_params(workdir)
    assert meta["step"] == STEPS
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # each process saved its own data-iterator position
    data = sorted(p.name for p in (workdir / "checkpoints" / str(STEPS) / "data").iterdir()
                  if p.name.startswith("process_"))
    assert data == ["process_0-of-2.json", "process_1-of-2.json"]

"""The full-scale CodeT5-large configs load for each pod topology and build its mesh on the
stated number of devices (simulated), with batches that split evenly over the mesh."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

CONFIGS = ["stage=warmup", "stage=critic", "stage=offline_rl", "stage=online_rl",
           "size=base,stage=critic"]

PROBE = r"""
import json, sys
import jax
from coderl_jax import partitioning
from coderl_jax.config import load_config
from coderl_jax.topologies import TOPOLOGIES
from coderl_jax.train.run import run_config
out = []
for name in sys.argv[1:]:
    for topo, t in TOPOLOGIES.items():
        run = run_config(load_config(f"configs/codet5.py:{name},topology={topo}"))
        mesh = partitioning.make_mesh(run.mesh, jax.devices()[:t["devices"]])
        rows = run.train.batch_size // run.train.num_microbatches
        out.append(dict(config=name, topology=topo, shape=dict(mesh.shape), size=mesh.size,
                        rows_per_microbatch=rows,
                        divisor=partitioning.batch_size_divisor(mesh),
                        remainder=run.train.batch_size % run.train.num_microbatches))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def meshes():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=64",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *CONFIGS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_config_builds_every_topology(meshes):
    from coderl_jax.topologies import TOPOLOGIES

    assert len(meshes) == len(CONFIGS) * len(TOPOLOGIES)
    expected = {"v4-32": {"data": 2, "fsdp": 8, "model": 1},
                "v5e-64": {"data": 4, "fsdp": 16, "model": 1},
                "gpu-2x8": {"data": 2, "fsdp": 8, "model": 1}}  # DCN 2 x ICI (1, 8, 1)
    for m in meshes:
        assert m["shape"] == expected[m["topology"]], m
        assert m["size"] == TOPOLOGIES[m["topology"]]["devices"]
        # each microbatch splits evenly over the data x fsdp rows
        assert m["remainder"] == 0 and m["rows_per_microbatch"] % m["divisor"] == 0, m


def test_unknown_topology_and_argless_config_are_one_line_errors():
    from coderl_jax.config import load_config
    from coderl_jax.errors import UserError

    with pytest.raises(UserError, match="unknown topology 'v9-9'; choose one of v4-32"):
        load_config(REPO / "configs" / "codet5.py:topology=v9-9")
    with pytest.raises(UserError, match="takes no argument"):
        load_config(REPO / "configs" / "demo.py:v4-32")
    with pytest.raises(UserError, match="tiny.py takes stage= one of warmup, critic"):
        load_config(REPO / "configs" / "tiny.py:v4-32")
    with pytest.raises(UserError, match="config file not found"):
        load_config(REPO / "configs" / "nope.py:v4-32")

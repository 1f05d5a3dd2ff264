"""Mesh shapes of the full-scale CodeRL runs on the pods they were sized for.

Select one with `--config configs/codet5.py:topology=TOPOLOGY` (e.g.
`configs/codet5.py:stage=critic,topology=v4-32`); without it a config uses every device it sees
as one FSDP axis. Per topology: the device count JAX sees (chips: a v4-32 slice is 16 chips on
4 hosts, a v5litepod-64 has 64 chips), the (data, fsdp, model) mesh within a slice (ICI) and
across slices/hosts (DCN), and a global batch each microbatch of which splits evenly over the
data x fsdp rows.
CodeT5-large (770M parameters) shards comfortably with FSDP alone; the data axis trades a
little memory for fewer all-gathers.
"""
from coderl_jax.errors import UserError

TOPOLOGIES = {
    # TPU v4-32: 16 chips (32 GiB HBM each), 4 hosts, one slice
    "v4-32": dict(devices=16, ici_parallelism=(2, 8, 1), dcn_parallelism=(1, 1, 1),
                  batch_size=64),
    # TPU v5e-64 (v5litepod-64): 64 chips (16 GiB HBM each), one slice
    "v5e-64": dict(devices=64, ici_parallelism=(4, 16, 1), dcn_parallelism=(1, 1, 1),
                   batch_size=256),
    # 2 GPU nodes x 8 GPUs, one process per node (launch/gpu_launch.sh): FSDP within a node,
    # data parallel across the two
    "gpu-2x8": dict(devices=16, ici_parallelism=(1, 8, 1), dcn_parallelism=(2, 1, 1),
                    batch_size=64),
}


def apply_topology(cfg, name: str | None):
    """Set cfg.mesh and cfg.train.batch_size for `name` (None or "": leave them)."""
    if not name:
        return cfg
    if name not in TOPOLOGIES:
        raise UserError(f"unknown topology {name!r}; choose one of {', '.join(TOPOLOGIES)}")
    t = TOPOLOGIES[name]
    cfg.mesh.ici_parallelism = t["ici_parallelism"]
    cfg.mesh.dcn_parallelism = t["dcn_parallelism"]
    cfg.train.batch_size = t["batch_size"]
    return cfg

"""Multi-host start-up: `jax.distributed.initialize` behind a flag or `CODERL_MULTIHOST=1`.

Coordinator, process count and id come from the arguments, else the environment
(`CODERL_COORDINATOR` host:port, `CODERL_NUM_PROCESSES`, `CODERL_PROCESS_ID`), else JAX's own
cluster detection (TPU pods, SLURM, ...). Call before anything touches a device.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from coderl_jax.errors import UserError

_initialized = False


def multihost_requested(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get("CODERL_MULTIHOST", "") in ("1", "true", "True")


def initialize(flag: bool = False, coordinator: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Join the multi-host job when requested; returns whether this run is multi-host."""
    global _initialized
    if not multihost_requested(flag):
        return False
    if _initialized:
        return True
    coordinator = coordinator or os.environ.get("CODERL_COORDINATOR") or None
    env_n = os.environ.get("CODERL_NUM_PROCESSES")
    env_id = os.environ.get("CODERL_PROCESS_ID")
    try:
        num_processes = num_processes if num_processes is not None else (
            int(env_n) if env_n else None)
        process_id = process_id if process_id is not None else (int(env_id) if env_id else None)
    except ValueError as e:
        raise UserError(f"CODERL_NUM_PROCESSES / CODERL_PROCESS_ID must be integers: {e}") from e
    if jax.config.jax_platforms in ("cpu",) or os.environ.get("JAX_PLATFORMS") == "cpu":
        # CPU devices need a collectives implementation across processes.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"jax.distributed.initialize failed: {e}") from e
    _initialized = True
    return True


def gather_objects(obj) -> list:
    """Every process's JSON-serialisable `obj`, in process order (a collective: every process
    calls it at the same point). One process: `[obj]`."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    sizes = sizes.reshape(-1)
    buf = np.zeros((int(sizes.max()),), np.uint8)
    buf[:data.size] = data
    everything = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(sizes), -1)
    return [json.loads(everything[i, :sizes[i]].tobytes().decode("utf-8"))
            for i in range(len(sizes))]

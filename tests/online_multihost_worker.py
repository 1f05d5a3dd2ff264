"""One process of a multi-host run of the tiny online-RL, critic-data or critical-sampling job
(for tests/test_rl_multihost.py), or, imported, the same job in one process.

    python tests/online_multihost_worker.py online WORKDIR --steps N --ici D,F,M
    python tests/online_multihost_worker.py critic-data OUT --actor ACTOR --ici D,F,M

Multi-host when CODERL_MULTIHOST=1 (with CODERL_COORDINATOR, CODERL_NUM_PROCESSES,
CODERL_PROCESS_ID).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coderl_jax.train import distributed  # noqa: E402


def online_run(steps: int, ici):
    """configs/tiny_online_rl.py, shortened: 2 problems x 4 samples (+ greedy) per step."""
    from coderl_jax.train.run import run_config

    spec = importlib.util.spec_from_file_location("tiny_online_rl",
                                                  REPO / "configs" / "tiny_online_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.train.num_steps = steps
    cfg.train.log_every = 1
    cfg.checkpoint.every_steps = 0
    cfg.checkpoint.async_save = False
    cfg.data.max_source_len = 128
    cfg.data.max_target_len = 32
    cfg.rl.max_new_tokens = 16
    cfg.mesh.ici_parallelism = tuple(ici)
    return run_config(cfg)


def run_online(workdir, steps: int, ici, devices=None):
    from coderl_jax.train.run import train_stage

    return train_stage(online_run(steps, ici), workdir, progress=False, devices=devices)


def run_critic_data(out, actor, ici, devices=None) -> dict:
    """3 demo problems x 2 samples + greedy from `actor` (uneven shares on 2 processes)."""
    from coderl_jax import partitioning
    from coderl_jax.config import MeshConfig
    from coderl_jax.data.sources import load_problems
    from coderl_jax.rl.program_dataset import generate_critic_data

    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=tuple(ici)), devices)
    return generate_critic_data(actor, load_problems("demo", "train")[:3], out, num_samples=2,
                                max_new_tokens=16, max_source_len=128, batch_size=4,
                                temperature=1.0, mesh=mesh, tfds=False, progress=False)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=("online", "critic-data"))
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ici", default="2,1,2")
    parser.add_argument("--actor", default=None)
    args = parser.parse_args()
    distributed.initialize()
    ici = [int(x) for x in args.ici.split(",")]
    if args.job == "critic-data":
        summary = run_critic_data(args.out, args.actor, ici)
        print("summary " + json.dumps(summary), flush=True)
        return 0
    result = run_online(args.out, args.steps, ici)
    print(f"steps {result.start_step}->{result.start_step + result.steps_run}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

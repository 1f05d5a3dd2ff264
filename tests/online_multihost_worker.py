"""One process of a multi-host run of the tiny online-RL, critic-data or critical-sampling job
(for tests/test_rl_multihost.py), or, imported, the same job in one process.

    python tests/online_multihost_worker.py online WORKDIR --steps N --ici D,F,M
    python tests/online_multihost_worker.py critic-data OUT --actor ACTOR --ici D,F,M
    python tests/online_multihost_worker.py critical OUT.json --ici D,F,M

Multi-host when CODERL_MULTIHOST=1 (with CODERL_COORDINATOR, CODERL_NUM_PROCESSES,
CODERL_PROCESS_ID).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coderl_jax.train import distributed  # noqa: E402


def online_run(steps: int, ici, critic: str | None = None):
    """configs/tiny.py:stage=online_rl, shortened: 2 problems x 4 samples (+ greedy) per step."""
    from coderl_jax.config import load_config
    from coderl_jax.train.run import run_config

    cfg = load_config(f"{REPO / 'configs' / 'tiny.py'}:stage=online_rl")
    cfg.train.num_steps = steps
    cfg.train.log_every = 1
    cfg.checkpoint.every_steps = 0
    cfg.checkpoint.async_save = False
    cfg.data.max_source_len = 128
    cfg.data.max_target_len = 32
    cfg.rl.max_new_tokens = 16
    cfg.mesh.ici_parallelism = tuple(ici)
    if critic:  # returns weighed by the critic, refreshed every 2 steps
        cfg.rl.critic_checkpoint = critic
        cfg.rl.critic_refresh_every = 2
        cfg.rl.critic_refresh_steps = 1
    return run_config(cfg)


def run_online(workdir, steps: int, ici, devices=None, critic: str | None = None):
    from coderl_jax.train.run import train_stage

    return train_stage(online_run(steps, ici, critic), workdir, progress=False,
                       devices=devices)


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


def run_critical(ici, devices=None) -> tuple[list[dict], list[int]]:
    """Critical sampling (sample, then refine or repair) of 3 held-out demo problems with a
    random tiny actor and critic: (rows, pids of the pools that judged the programs)."""
    import os

    import jax

    from coderl_jax import partitioning
    from coderl_jax.config import CriticConfig, MeshConfig, model_preset
    from coderl_jax.data.demo import build_demo
    from coderl_jax.execution.pool import ExecutionPool
    from coderl_jax.inference import critical_sampling as cs
    from coderl_jax.models import t5
    from coderl_jax.models.critic import init_critic_params
    from coderl_jax.tokenizer import load_tokenizer
    from coderl_jax.train.distributed import gather_objects

    config = model_preset("tiny", dropout_rate=0.0)
    head = CriticConfig(num_classes=2)
    models = cs.Models(config, jax.device_get(t5.init_params(config, jax.random.PRNGKey(0))),
                       config, head,
                       jax.device_get(init_critic_params(config, head, jax.random.PRNGKey(1))))
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=tuple(ici)), devices)
    problems = [it.problem for it in build_demo() if it.problem.split == "heldout"][:3]
    cfg = cs.CriticalSamplingConfig(num_samples=4, rounds=1, top_m=2, max_new_tokens=16,
                                    max_target_len=64, batch_size=8, temperature=1.0, top_p=1.0,
                                    block_size=2)
    with ExecutionPool(workers=2, timeout=4.0) as pool:
        rows = cs.CriticalSampler(models, load_tokenizer(), cfg, mesh=mesh, pool=pool).run(
            problems)
        judged = pool.stats()["cache_hits"] + pool.stats()["cache_misses"]
    return rows, gather_objects([os.getpid(), judged])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=("online", "critic-data", "critical"))
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ici", default="2,1,2")
    parser.add_argument("--actor", default=None)
    parser.add_argument("--critic", default=None)
    args = parser.parse_args()
    distributed.initialize()
    ici = [int(x) for x in args.ici.split(",")]
    if args.job == "critical":
        import jax

        rows, pools = run_critical(ici)
        if jax.process_index() == 0:
            Path(args.out).write_text(json.dumps({"rows": rows, "pools": pools}))
        return 0
    if args.job == "critic-data":
        summary = run_critic_data(args.out, args.actor, ici)
        print("summary " + json.dumps(summary), flush=True)
        return 0
    result = run_online(args.out, args.steps, ici, critic=args.critic)
    print(f"steps {result.start_step}->{result.start_step + result.steps_run}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Online RL of CodeT5-large on APPS: sample from the live actor, run the unit tests, learn.

    coderl train --config configs/codet5_large_online_rl.py --workdir runs/codet5_large_online \
        --config.train.init_checkpoint=runs/codet5_large_rl/model \
        --config.rl.critic_checkpoint=runs/codet5_large_critic/model \
        --config.data.problems=<APPS>/train

Each step: 8 problems x 4 samples (top-p 0.95, top-k 50) + a greedy program per problem from the
current
params, executed by 32 sandbox workers while the device learns from the previous batch and
samples the next (rl.overlap_depth=1), one RL + CE update. Prints the device idle fraction and the
execution-cache hit rate at the end (online_stats.json, metrics.jsonl `online/...`). On a pod
each host executes its own share of every batch in its own sandbox pool.
Online RL is not in CodeRL's code; it keeps CodeRL's optimizer (AdamW, constant lr 2e-5, no
warm-up, weight decay 0.05, clipping 1.0) and sampling (temperature 0.6, top-p 0.95, top-k 50).
"""
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config


def get_config(topology: str | None = None):
    cfg = base_config(size="large", stage="online_rl")
    cfg.model.dtype = "bfloat16"
    cfg.model.remat = True
    cfg.mesh.ici_parallelism = (1, -1, 1)
    cfg.train.num_steps = 2000
    cfg.train.batch_size = 32
    cfg.train.log_every = 10
    cfg.train.rl_mix = "sum"
    cfg.train.ce_weight = 1.0
    cfg.optimizer.learning_rate = 2e-5
    cfg.optimizer.weight_decay = 0.05
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.optimizer.grad_clip_norm = 1.0
    cfg.checkpoint.every_steps = 100
    cfg.checkpoint.keep = 3
    cfg.data.problems = "data/APPS/train"
    cfg.data.split = ""
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    cfg.rl.mode = "fixed"
    cfg.rl.baseline = "greedy"
    cfg.rl.num_samples = 4
    cfg.rl.temperature = 0.6
    cfg.rl.top_p = 0.95
    cfg.rl.top_k = 50  # CodeRL's: the default of the transformers 4.16 generate it ran
    cfg.rl.overlap_depth = 1
    cfg.rl.workers = 32
    cfg.rl.timeout = 4.0
    return apply_topology(cfg, topology)


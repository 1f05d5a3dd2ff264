"""Tiny online RL on the demo problems: sample from the live actor, execute, learn, overlapped.

    coderl train --config configs/tiny_online_rl.py --workdir W_ONLINE \
        --config.train.init_checkpoint=W_OFFLINE/model --config.rl.critic_checkpoint=W_CRITIC/model

Each step samples 4 programs for each of 2 problems from the current actor (plus a greedy
program per problem for the baseline), executes them in the sandbox pool while the device learns
from the previous batch and samples the next (rl.overlap_depth=1; 0 is the serial loop), and
takes one RL + CE update. At the end it prints the device idle fraction and the execution-cache
hit rate (also in online_stats.json and metrics.jsonl `online/...`). Writes checkpoints/,
tensorboard/ and the actor in W_ONLINE/model.
"""
from coderl_jax.train.run import base_config


def get_config():
    cfg = base_config(size="tiny", stage="online_rl")
    cfg.model.dropout_rate = 0.1
    cfg.train.num_steps = 40
    cfg.train.batch_size = 8
    cfg.train.log_every = 5
    cfg.train.rl_mix = "sum"
    cfg.train.ce_weight = 1.0
    cfg.optimizer.learning_rate = 2e-4
    cfg.optimizer.schedule = "constant"
    cfg.checkpoint.every_steps = 20
    cfg.checkpoint.keep = 2
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 128
    cfg.rl.mode = "fixed"
    cfg.rl.baseline = "greedy"
    cfg.rl.num_samples = 4
    cfg.rl.temperature = 0.6
    cfg.rl.top_p = 0.95
    cfg.rl.top_k = 50  # CodeRL's: the default of the transformers 4.16 generate it ran
    cfg.rl.overlap_depth = 1
    cfg.rl.workers = 2
    cfg.rl.timeout = 4.0
    return cfg

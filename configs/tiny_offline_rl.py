"""Tiny offline RL (CodeRL's RL fine-tuning on pre-generated samples) on the demo problems.

    coderl train --config configs/tiny_offline_rl.py --workdir W_OFFLINE \
        --config.train.init_checkpoint=WARMUP/model --config.data.programs=CD \
        --config.rl.critic_checkpoint=W_CRITIC/model

The actor starts from the warm-up model; each batch pairs 8 sampled programs of CD (a
`coderl critic-data` folder: samples + greedy baselines) carrying token returns
(reward - greedy reward) x p_critic(true outcome) from the frozen critic with 8 ground-truth
programs for the cross-entropy part. Writes checkpoints/, metrics.jsonl (rl_loss, ce_loss,
mean_return), tensorboard/ and the RL-tuned actor in W_OFFLINE/model.
Switches: --config.rl.mode=paper_faithful (CodeRL's EOS-padded unmasked sources, critic pooling
over padding, alternating CE/RL steps), --config.rl.baseline=mean_others (GRPO-style).
"""
from coderl_jax.train.run import base_config


def get_config():
    cfg = base_config(size="tiny", stage="offline_rl")
    cfg.model.dropout_rate = 0.1
    cfg.train.num_steps = 60
    cfg.train.batch_size = 8
    cfg.train.log_every = 10
    cfg.train.rl_mix = "sum"
    cfg.train.rl_weight = 1.0
    cfg.train.ce_weight = 1.0
    cfg.optimizer.learning_rate = 2e-4
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.checkpoint.every_steps = 50
    cfg.checkpoint.keep = 2
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.programs = ""  # a `coderl critic-data` folder or critic-score output (required)
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 128
    cfg.rl.mode = "fixed"
    cfg.rl.baseline = "greedy"
    cfg.rl.critic_checkpoint = ""
    return cfg

"""CodeRL's RL fine-tuning of CodeT5-large on APPS (offline: pre-generated samples, frozen critic).

    coderl critic-score --checkpoint runs/codet5_large_critic/model --problems <APPS>/train \
        --programs runs/critic_data --out runs/critic_scores.jsonl
    coderl train --config configs/codet5_large_rl.py --workdir runs/codet5_large_rl \
        --config.train.init_checkpoint=runs/codet5_large_warmup/model \
        --config.data.problems=<APPS>/train --config.data.programs=runs/critic_scores.jsonl \
        --config.rl.greedy_programs=runs/critic_data

(or skip critic-score and pass --config.data.programs=runs/critic_data
--config.rl.critic_checkpoint=runs/codet5_large_critic/model: the run scores once and keeps the
scores in its workdir). CodeRL's recipe (scripts/train_actor_rl_deepspeed.sh): relative returns
against the greedy baseline, token returns weighted by the critic, AdamW, constant lr 2e-5 with
no warm-up, weight decay 0.05, clipping 1.0, 4 accumulated microbatches, each sample paired with
a random ground-truth program for the CE part. rl.mode=fixed sums RL + CE every step with real
masks; --config.rl.mode=paper_faithful runs CodeRL's code as released (EOS-padded unmasked
sources, CE on even and RL on odd microbatches: 2 + 2 per update). Deliberate changes: bfloat16
instead of fp16, a global batch of 32 rows (8 per microbatch) instead of 1 per GPU, the optimizer
details named in configs/codet5_large.py.
"""
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config


def get_config(topology: str | None = None):
    cfg = base_config(size="large", stage="offline_rl")
    cfg.model.dtype = "bfloat16"
    cfg.model.remat = True
    cfg.mesh.ici_parallelism = (1, -1, 1)
    cfg.train.num_steps = 20000
    cfg.train.batch_size = 32
    cfg.train.num_microbatches = 4  # CodeRL's --grad-acc-steps 4
    cfg.train.log_every = 50
    cfg.train.rl_mix = "sum"
    cfg.train.rl_weight = 1.0
    cfg.train.ce_weight = 1.0
    cfg.optimizer.learning_rate = 2e-5
    cfg.optimizer.weight_decay = 0.05
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.optimizer.grad_clip_norm = 1.0
    cfg.checkpoint.every_steps = 1000
    cfg.checkpoint.keep = 3
    cfg.data.problems = "data/APPS/train"
    cfg.data.split = ""
    cfg.data.programs = ""  # critic-score output or a critic-data folder (required)
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    cfg.rl.mode = "fixed"
    cfg.rl.baseline = "greedy"
    cfg.rl.critic_checkpoint = ""
    return apply_topology(cfg, topology)


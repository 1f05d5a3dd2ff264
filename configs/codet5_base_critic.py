"""The critic CodeRL trained (scripts/train_critic.sh): CodeT5-base plus the error head, started
from the pretrained CodeT5-base weights (not from the warmed-up actor), on executed samples of the
warmed-up large actor with every ground-truth solution counted as passed.

    coderl convert from-hf --hf-dir <Salesforce/codet5-base download> --out ckpt/codet5-base
    coderl critic-data --checkpoint runs/codet5_large_warmup/model --problems <APPS>/train \
        --out runs/critic_data --num-samples 20 --workers 16
    coderl train --config configs/codet5_base_critic.py --workdir runs/codet5_base_critic \
        --config.train.init_checkpoint=ckpt/codet5-base \
        --config.data.problems=<APPS>/train --config.data.programs=runs/critic_data

CodeRL's recipe: batch 8 per GPU, no accumulation, AdamW, constant lr 2e-5 with no warm-up,
weight decay 0.05, clipping 1.0, 10 epochs, 4 outcome classes. Deliberate changes: bfloat16
instead of fp16, a global batch of 64 and a step count, the optimizer details named in
configs/codet5_large.py. The large RL configs take whichever critic rl.critic_checkpoint names:
this one (CodeRL's) or configs/codet5_large_critic.py's (a large critic from the warm-up actor).
"""
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config


def get_config(topology: str | None = None):
    cfg = base_config(size="base", stage="critic")
    cfg.critic.num_classes = 4
    cfg.model.dtype = "bfloat16"
    cfg.mesh.ici_parallelism = (1, -1, 1)
    cfg.train.num_steps = 20000
    cfg.train.batch_size = 64
    cfg.train.num_microbatches = 1
    cfg.train.log_every = 50
    cfg.optimizer.learning_rate = 2e-5
    cfg.optimizer.weight_decay = 0.05
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.optimizer.grad_clip_norm = 1.0
    cfg.checkpoint.every_steps = 1000
    cfg.checkpoint.keep = 3
    cfg.data.problems = "data/APPS/train"
    cfg.data.split = ""
    cfg.data.programs = ""  # a `coderl critic-data` folder or CodeRL layout (required)
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    cfg.rl.mode = "fixed"
    cfg.rl.critic_ground_truth = True
    cfg.rl.eval_fraction = 0.02
    cfg.rl.eval_every = 5000
    return apply_topology(cfg, topology)

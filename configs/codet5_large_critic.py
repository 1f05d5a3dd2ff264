"""CodeRL's critic on APPS: CodeT5 plus the error head, trained on executed samples of the
warmed-up actor with every ground-truth solution counted as passed.

    coderl critic-data --checkpoint runs/codet5_large_warmup/model --problems <APPS>/train \
        --out runs/critic_data --num-samples 20 --workers 16
    coderl train --config configs/codet5_large_critic.py --workdir runs/codet5_large_critic \
        --config.train.init_checkpoint=runs/codet5_large_warmup/model \
        --config.data.problems=<APPS>/train --config.data.programs=runs/critic_data

CodeRL's recipe (scripts/train_critic_deepspeed.sh): AdamW, constant lr 2e-5 with no warm-up,
weight decay 0.05, clipping 1.0, 10 epochs, 4 outcome classes (deliberate changes: bfloat16, a
step count, the optimizer details named in configs/codet5_large.py, and the size: CodeRL trained
a codet5-base critic from pretrained weights: configs/codet5_base_critic.py).
2% of the problems are held out: at the end the run prints the held-out accuracy per class
against the majority class (also metrics.jsonl `heldout/...` and critic_eval.json). Writes
checkpoints/ every 1000 steps and the critic in model/ (rl.critic_checkpoint of the RL configs).
"""
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config


def get_config(topology: str | None = None):
    cfg = base_config(size="large", stage="critic")
    cfg.critic.num_classes = 4
    cfg.model.dtype = "bfloat16"
    cfg.model.remat = True
    cfg.mesh.ici_parallelism = (1, -1, 1)
    cfg.train.num_steps = 20000
    cfg.train.batch_size = 64
    cfg.train.num_microbatches = 2
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


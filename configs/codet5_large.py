"""CodeRL actor warm-up of CodeT5-large on APPS (cross-entropy on ground-truth programs).

    coderl convert from-hf --hf-dir <Salesforce/codet5-large download> --out ckpt/codet5-large
    coderl train --config configs/codet5_large.py --workdir runs/codet5_large_warmup \
        --config.train.init_checkpoint=ckpt/codet5-large --config.data.problems=<APPS>/train

CodeRL's warm-up recipe: source <= 600 tokens, target <= 512, AdamW, linear decay, bfloat16
compute on TPU/GPU. Writes checkpoints/ every 1000 steps (last 3 kept), metrics.jsonl,
tensorboard/ and the final model/ in the workdir; the training loss should fall steadily from
CodeT5's starting cross-entropy on APPS solutions. Without --config.train.init_checkpoint it
trains from random initialisation (useful only for throughput checks).
"""
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config


def get_config(topology: str | None = None):
    cfg = base_config(size="large", stage="warmup")
    cfg.model.dtype = "bfloat16"
    cfg.mesh.ici_parallelism = (1, -1, 1)
    cfg.model.remat = True
    cfg.train.num_microbatches = 4
    cfg.train.num_steps = 10000
    cfg.train.batch_size = 32
    cfg.train.log_every = 50
    cfg.optimizer.learning_rate = 2e-5
    cfg.optimizer.warmup_steps = 500
    cfg.optimizer.schedule = "linear"
    cfg.checkpoint.every_steps = 1000
    cfg.checkpoint.keep = 3
    cfg.data.problems = "data/APPS/train"  # CodeRL's layout; override with your APPS copy
    cfg.data.split = ""
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    return apply_topology(cfg, topology)


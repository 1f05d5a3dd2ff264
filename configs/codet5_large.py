"""CodeRL actor warm-up of CodeT5-large on APPS (cross-entropy on ground-truth programs).

    coderl convert from-hf --hf-dir <Salesforce/codet5-large download> --out ckpt/codet5-large
    coderl train --config configs/codet5_large.py --workdir runs/codet5_large_warmup \
        --config.train.init_checkpoint=ckpt/codet5-large --config.data.problems=<APPS>/train

CodeRL's warm-up recipe (train.py + scripts/train_actor.sh): source <= 600 tokens, target <= 512,
AdamW (weight decay 0.05), constant lr 2e-5 with no warm-up (`constant_with_warmup`, 0 warm-up
steps), gradient clipping 1.0, 4 accumulated microbatches. Deliberate changes: bfloat16 compute
instead of fp16 with loss scaling (TPUs); a global batch of 32 rows and a step count instead of
CodeRL's 1 row per GPU for 10 epochs; optax's AdamW (eps inside the bias correction, decay on the
pre-update weights) and decay on matrices only, where HF's Trainer also decays T5's layer-norm
scales and skips `relative_attention_bias`. rl.mode=paper_faithful feeds EOS-padded unmasked
sources as CodeRL does. Writes checkpoints/ every 1000 steps (last 3 kept), metrics.jsonl,
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
    cfg.optimizer.weight_decay = 0.05
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.optimizer.grad_clip_norm = 1.0
    cfg.checkpoint.every_steps = 1000
    cfg.checkpoint.keep = 3
    cfg.data.problems = "data/APPS/train"  # CodeRL's layout; override with your APPS copy
    cfg.data.split = ""
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    return apply_topology(cfg, topology)


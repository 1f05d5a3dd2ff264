"""Warm-up of the repair model for critical sampling: the actor finetuned on repair pairs.

    coderl generate --checkpoint $CKPT --problems $APPS_TRAIN --out $W/train_samples.jsonl \
        --num-samples 20 --temperature 0.6 --top-p 0.95
    coderl run-tests --problems $APPS_TRAIN --programs $W/train_samples.jsonl \
        --out $W/train_results.jsonl
    coderl critical-sampling mine-repair --problems $APPS_TRAIN \
        --results $W/train_results.jsonl --out $W/repair_data
    coderl train --config configs/critical_sampling_repair.py --workdir $W/repair \
        --config.train.init_checkpoint=$CKPT --config.data.problems=$W/repair_data

mine-repair pairs every failing program (with its outcome and error message) with the closest
passing program of its problem (a passing sample or a reference solution) and writes an APPS
folder whose prompts are the repair prompts (coderl_jax/inference/repair.py); this config trains
on it with the ordinary cross-entropy warm-up, starting from the actor (its architecture comes
from init_checkpoint). Use the result with
`coderl critical-sampling ... --repair-checkpoint $W/repair/model`.
"""
from coderl_jax.train.run import base_config


def get_config():
    cfg = base_config(size="small", stage="warmup")
    cfg.model.dtype = "bfloat16"
    cfg.train.num_steps = 2000
    cfg.train.batch_size = 32
    cfg.train.log_every = 50
    cfg.optimizer.learning_rate = 2e-5
    cfg.optimizer.warmup_steps = 100
    cfg.optimizer.schedule = "linear"
    cfg.checkpoint.every_steps = 500
    cfg.checkpoint.keep = 2
    cfg.data.problems = "repair_data"  # the folder `coderl critical-sampling mine-repair` wrote
    cfg.data.split = ""
    cfg.data.max_source_len = 1024  # question + failing program + error message
    cfg.data.max_target_len = 512
    return cfg

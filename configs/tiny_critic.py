"""Tiny CodeRL critic on the demo problems' sampled programs (tests and the demo).

    coderl critic-data --checkpoint WARMUP/model --problems demo --split train --out CD \
        --num-samples 8 --max-new-tokens 128 --max-source-len 256
    coderl train --config configs/tiny_critic.py --workdir W_CRITIC \
        --config.data.programs=CD --config.train.init_checkpoint=WARMUP/model

Trains CodeRL's critic (the actor's T5 plus the error head, 4 outcome classes) on the executed
samples plus every ground-truth program counted as passed, holding out 10% of the problems.
At the end it prints and logs (metrics.jsonl `heldout/...`, critic_eval.json) the held-out
accuracy overall and per class next to the majority-class baseline; it should beat the baseline.
The critic lands in W_CRITIC/model (give it to offline/online RL as rl.critic_checkpoint).
`--config.rl.mode=paper_faithful` trains it CodeRL's way (EOS-padded unmasked sources, pooling
over padded positions).
"""
from coderl_jax.train.run import base_config


def get_config():
    cfg = base_config(size="tiny", stage="critic")
    cfg.critic.num_classes = 4
    cfg.model.dropout_rate = 0.1
    cfg.train.num_steps = 150
    cfg.train.batch_size = 16
    cfg.train.log_every = 10
    cfg.optimizer.learning_rate = 1e-3
    cfg.optimizer.warmup_steps = 10
    cfg.optimizer.schedule = "linear"
    cfg.checkpoint.every_steps = 50
    cfg.checkpoint.keep = 2
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.programs = ""  # a `coderl critic-data` folder (required)
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 128
    cfg.rl.mode = "fixed"
    cfg.rl.critic_ground_truth = True
    cfg.rl.eval_fraction = 0.1
    return cfg

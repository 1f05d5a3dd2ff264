"""Tiny CodeT5-shaped model, actor warm-up on the bundled demo problems (tests and the demo).

    coderl train --config configs/tiny.py --workdir /tmp/coderl_tiny

On 2 CPU cores this runs 200 warm-up steps of batch 8 (256 source + 256 target tokens) in a few
minutes and should produce: <workdir>/checkpoints/<step>/ (orbax, the last 3 kept),
metrics.jsonl (training loss falling from about ln(32100) ~ 10.4), tensorboard/ event files and
the final model in <workdir>/model (load it with `coderl generate --checkpoint <workdir>/model`).
Other stages: --config.train.stage=critic --config.data.programs=RESULTS.jsonl, or
--config.train.stage=offline_rl --config.data.programs=RETURNS.jsonl, each with
--config.train.init_checkpoint=<warm-up workdir>.
"""
from coderl_jax.train.run import base_config


def get_config():
    cfg = base_config(size="tiny", stage="warmup")
    cfg.model.dropout_rate = 0.1
    cfg.train.num_steps = 200
    cfg.train.batch_size = 8
    cfg.train.log_every = 10
    cfg.optimizer.learning_rate = 1e-3
    cfg.optimizer.warmup_steps = 20
    cfg.optimizer.schedule = "linear"
    cfg.checkpoint.every_steps = 50
    cfg.checkpoint.keep = 3
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 256
    return cfg

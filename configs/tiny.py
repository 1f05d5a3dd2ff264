"""Tiny CodeT5-shaped model on the bundled demo problems, every CodeRL stage (tests and the demo).

`--config configs/tiny.py:stage=S`, S = warmup (the default) | critic | offline_rl | online_rl:

    coderl train --config configs/tiny.py --workdir W_WARMUP
    coderl critic-data --checkpoint W_WARMUP/model --problems demo --split train --out CD \
        --num-samples 8 --max-new-tokens 128 --max-source-len 256
    coderl train --config configs/tiny.py:stage=critic --workdir W_CRITIC \
        --config.data.programs=CD --config.train.init_checkpoint=W_WARMUP/model
    coderl train --config configs/tiny.py:stage=offline_rl --workdir W_OFFLINE \
        --config.train.init_checkpoint=W_WARMUP/model --config.data.programs=CD \
        --config.rl.critic_checkpoint=W_CRITIC/model
    coderl train --config configs/tiny.py:stage=online_rl --workdir W_ONLINE \
        --config.train.init_checkpoint=W_OFFLINE/model --config.rl.critic_checkpoint=W_CRITIC/model

- warmup: 200 cross-entropy steps of batch 8 (256 source + 256 target tokens), a few minutes on
  2 CPU cores; the training loss falls from about ln(32100) ~ 10.4.
- critic: CodeRL's critic (the actor's T5 plus the error head, 4 outcome classes) on the
  executed samples plus every ground-truth program counted as passed, holding out 10% of the
  problems; it prints and logs (metrics.jsonl `heldout/...`, critic_eval.json) the held-out
  accuracy overall and per class next to the majority-class baseline.
- offline_rl: each batch pairs 8 sampled programs of CD (samples + greedy baselines) carrying
  token returns (reward - greedy reward) x p_critic(true outcome) from the frozen critic with 8
  ground-truth programs for the cross-entropy part (metrics: rl_loss, ce_loss, mean_return).
- online_rl: each step samples 4 programs for each of 2 problems from the current actor (plus a
  greedy program per problem for the baseline), executes them in the sandbox pool while the
  device learns from the previous batch and samples the next (rl.overlap_depth=1; 0 is the
  serial loop), and takes one RL + CE update; it prints the device idle fraction and the
  execution-cache hit rate (also in online_stats.json and metrics.jsonl `online/...`).

Every stage writes checkpoints/, metrics.jsonl, tensorboard/ and its model in <workdir>/model
(load an actor with `coderl generate --checkpoint <workdir>/model`). Switches:
--config.rl.mode=paper_faithful (CodeRL's EOS-padded unmasked sources, critic pooling over
padding, alternating CE/RL steps), --config.rl.baseline=mean_others (GRPO-style).
"""
from coderl_jax.errors import UserError
from coderl_jax.train.run import base_config

# what each stage changes from the common settings in get_config, section -> fields
STAGES = {
    "warmup": dict(
        train=dict(num_steps=200),
        optimizer=dict(learning_rate=1e-3, warmup_steps=20, schedule="linear"),
        checkpoint=dict(every_steps=50, keep=3),
        data=dict(max_target_len=256)),
    "critic": dict(
        critic=dict(num_classes=4),
        train=dict(num_steps=150, batch_size=16),
        optimizer=dict(learning_rate=1e-3, warmup_steps=10, schedule="linear"),
        data=dict(programs=""),  # a `coderl critic-data` folder (required)
        rl=dict(critic_ground_truth=True, eval_fraction=0.1)),
    "offline_rl": dict(
        train=dict(num_steps=60, rl_mix="sum", rl_weight=1.0, ce_weight=1.0),
        data=dict(programs=""),  # a critic-data folder or critic-score output (required)
        rl=dict(baseline="greedy", critic_checkpoint="")),
    "online_rl": dict(
        train=dict(num_steps=40, log_every=5, rl_mix="sum", ce_weight=1.0),
        checkpoint=dict(every_steps=20),
        rl=dict(baseline="greedy", num_samples=4, temperature=0.6, top_p=0.95,
                top_k=50,  # CodeRL's: the default of the transformers 4.16 generate it ran
                overlap_depth=1, workers=2, timeout=4.0)),
}


def get_config(arg: str | None = None):
    key, sep, stage = (arg or "stage=warmup").partition("=")
    if key != "stage" or not sep or stage not in STAGES:
        raise UserError(f"configs/tiny.py takes stage= one of {', '.join(STAGES)}, got {arg!r}")
    cfg = base_config(size="tiny", stage=stage)
    cfg.model.dropout_rate = 0.1
    cfg.train.batch_size = 8
    cfg.train.log_every = 10
    cfg.optimizer.learning_rate = 2e-4
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 0
    cfg.checkpoint.every_steps = 50
    cfg.checkpoint.keep = 2
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 128
    if stage != "warmup":
        cfg.rl.mode = "fixed"
    for section, fields in STAGES[stage].items():
        cfg[section].update(fields)
    return cfg

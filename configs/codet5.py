"""CodeRL on APPS with CodeT5: every stage at every size, one recipe (big_vision-style variants).

`--config configs/codet5.py:ARG` with ARG = comma-separated `key=value` of
  size      small | base | large (default large; model/remat/mesh per size)
  stage     warmup | critic | offline_rl | online_rl (default warmup)
  topology  a pod of coderl_jax/topologies.py (v4-32, v5e-64, gpu-2x8): its mesh and batch
e.g. `configs/codet5.py:size=base,stage=critic` or
`configs/codet5.py:stage=offline_rl,topology=v4-32`.

    coderl convert from-hf --hf-dir <Salesforce/codet5-large download> --out ckpt/codet5-large
    coderl train --config configs/codet5.py --workdir runs/codet5_large_warmup \
        --config.train.init_checkpoint=ckpt/codet5-large --config.data.problems=<APPS>/train
    coderl critic-data --checkpoint runs/codet5_large_warmup/model --problems <APPS>/train \
        --out runs/critic_data --num-samples 20 --workers 16
    coderl train --config configs/codet5.py:size=base,stage=critic \
        --workdir runs/codet5_base_critic --config.train.init_checkpoint=ckpt/codet5-base \
        --config.data.problems=<APPS>/train --config.data.programs=runs/critic_data
    coderl critic-score --checkpoint runs/codet5_base_critic/model --problems <APPS>/train \
        --programs runs/critic_data --out runs/critic_scores.jsonl
    coderl train --config configs/codet5.py:stage=offline_rl --workdir runs/codet5_large_rl \
        --config.train.init_checkpoint=runs/codet5_large_warmup/model \
        --config.data.problems=<APPS>/train --config.data.programs=runs/critic_scores.jsonl \
        --config.rl.greedy_programs=runs/critic_data
    coderl train --config configs/codet5.py:stage=online_rl --workdir runs/codet5_large_online \
        --config.train.init_checkpoint=runs/codet5_large_rl/model \
        --config.rl.critic_checkpoint=runs/codet5_base_critic/model \
        --config.data.problems=<APPS>/train

CodeRL's recipe (train.py, scripts/train_actor*.sh, train_critic*.sh, train_actor_rl*.sh) in
every stage and size: sources <= 600 tokens, targets <= 512, AdamW with weight decay 0.05, a
constant lr 2e-5 with no warm-up (`constant_with_warmup`, 0 steps), clipping 1.0.
  - warmup: CE on the ground-truth programs, 4 accumulated microbatches.
  - critic: the T5 plus the error head, 4 outcome classes, trained on executed samples of the
    warmed-up actor with every ground-truth solution counted as passed; 2% of the problems are
    held out (the held-out accuracy per class against the majority class is printed at the end,
    also metrics.jsonl `heldout/...` and critic_eval.json). CodeRL's critic is
    `size=base,stage=critic` started from the pretrained CodeT5-base weights; `stage=critic`
    (large, from the warm-up actor) is not CodeRL's. The RL stages use whichever critic
    rl.critic_checkpoint names.
  - offline_rl: relative returns against the greedy baseline, token returns weighted by the
    frozen critic, each sample paired with a random ground-truth program for the CE part, 4
    accumulated microbatches (CodeRL's --grad-acc-steps 4). rl.mode=fixed sums RL + CE every
    step with real masks; --config.rl.mode=paper_faithful runs CodeRL's code as released
    (EOS-padded unmasked sources, CE on even and RL on odd microbatches: 2 + 2 per update). Skip
    critic-score and pass --config.data.programs=runs/critic_data
    --config.rl.critic_checkpoint=... to score once at the start (kept in the workdir).
  - online_rl (not in CodeRL's code): each step 8 problems x 4 samples (CodeRL's sampling:
    temperature 0.6, top-p 0.95, top-k 50) + a greedy program per problem from the current
    params, executed by 32 sandbox workers while the device learns from the previous batch and
    samples the next (rl.overlap_depth=1), one RL + CE update. Prints the device idle fraction
    and the execution-cache hit rate (online_stats.json, metrics.jsonl `online/...`). On a pod
    each host executes its own share of every batch in its own sandbox pool.
Deliberate changes: bfloat16 compute instead of fp16 with loss scaling (TPUs); a global batch
and a step count instead of 1 row per GPU for 10 epochs. The optimizer is optax's AdamW with
decay on matrices under rl.mode=fixed, CodeRL's (transformers 4.16's AdamW, HF Trainer's decay
list) under --config.rl.mode=paper_faithful (README table). Each run writes
checkpoints/ (every 1000 steps, 100 online; the last 3 kept), metrics.jsonl, tensorboard/ and
the final model/ in the workdir. Without --config.train.init_checkpoint a stage trains from
random initialisation (useful only for throughput checks).
"""
from coderl_jax.errors import UserError
from coderl_jax.topologies import apply_topology
from coderl_jax.train.run import base_config

# size -> (model fields, mesh within a slice): large rematerialises to fit its activations
SIZES = {"small": ({}, (-1, 1, 1)), "base": ({}, (1, -1, 1)),
         "large": ({"remat": True}, (1, -1, 1))}
# stage -> section fields that differ from the shared recipe below
STAGES = {
    "warmup": {"train": dict(num_steps=10000, num_microbatches=4)},
    "critic": {"train": dict(num_steps=20000, batch_size=64, num_microbatches=2),
               "critic": dict(num_classes=4),
               "rl": dict(critic_ground_truth=True, eval_fraction=0.02, eval_every=5000)},
    "offline_rl": {"train": dict(num_steps=20000, num_microbatches=4, rl_mix="sum",
                                 rl_weight=1.0, ce_weight=1.0),
                   "rl": dict(baseline="greedy", critic_checkpoint="")},
    "online_rl": {"train": dict(num_steps=2000, log_every=10, rl_mix="sum", ce_weight=1.0),
                  "checkpoint": dict(every_steps=100),
                  "rl": dict(baseline="greedy", num_samples=4, temperature=0.6, top_p=0.95,
                             top_k=50, overlap_depth=1, workers=32, timeout=4.0)},
}


def parse_arg(arg: str | None) -> dict:
    """`size=...,stage=...,topology=...` -> a dict with every key (defaults filled in)."""
    out = {"size": "large", "stage": "warmup", "topology": ""}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in out:
            raise UserError(f"configs/codet5.py takes size=, stage= and topology= "
                            f"(comma-separated), got {item!r}")
        out[key] = value
    for key, table in (("size", SIZES), ("stage", STAGES)):
        if out[key] not in table:
            raise UserError(f"configs/codet5.py: unknown {key} {out[key]!r}; choose one of "
                            f"{', '.join(table)}")
    return out


def get_config(arg: str | None = None):
    a = parse_arg(arg)
    model, ici = SIZES[a["size"]]
    cfg = base_config(size=a["size"], stage=a["stage"])
    cfg.model.dtype = "bfloat16"
    cfg.model.update(model)
    cfg.mesh.ici_parallelism = ici
    cfg.train.batch_size = 32
    cfg.train.log_every = 50
    cfg.optimizer.update(dict(learning_rate=2e-5, weight_decay=0.05, schedule="constant",
                              warmup_steps=0, grad_clip_norm=1.0))
    cfg.checkpoint.update(dict(every_steps=1000, keep=3))
    cfg.data.problems = "data/APPS/train"  # CodeRL's layout; override with your APPS copy
    cfg.data.split = ""
    cfg.data.programs = ""  # critic / offline_rl: a critic-data folder or critic-score output
    cfg.data.max_source_len = 600
    cfg.data.max_target_len = 512
    for section, fields in STAGES[a["stage"]].items():
        cfg[section].update(fields)
    if a["stage"] == "critic" and a["size"] != "large":
        cfg.train.num_microbatches = 1  # CodeRL's base critic: no accumulation
    return apply_topology(cfg, a["topology"])

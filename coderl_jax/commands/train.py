"""`coderl train --config configs/X.py [--config.a.b=v ...] --workdir W`.

Runs the stage the config names (train.stage: warmup, critic, offline_rl, online_rl), resuming
from the workdir's latest checkpoint. Writes checkpoints/, metrics.jsonl, tensorboard/ and the
final model (model/) under the workdir.
"""
from __future__ import annotations

import json

from coderl_jax.commands import arguments


def register(sub) -> None:
    p = sub.add_parser("train", help="train a stage (warm-up, critic, offline or online RL) "
                                     "from a config",
                       description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True,
                   help="checkpoints, metrics.jsonl, tensorboard/ and the final model/ go here")
    arguments.add_no_progress(p)
    arguments.add_config(p, run, required=True, help="a configs/*.py file with get_config()",
                         example="--config.train.num_steps=10 "
                                 "--config.mesh.ici_parallelism='(2,2,2)'")


def run(args) -> int:
    from coderl_jax.config import load_config
    from coderl_jax.train.run import run_config, train_stage

    cfg = load_config(args.config, args.overrides)
    run_cfg = run_config(cfg)
    result = train_stage(run_cfg, args.workdir, progress=not args.no_progress)
    import jax

    if jax.process_index() == 0:
        summary = {"stage": run_cfg.train.stage, "workdir": str(args.workdir),
                   "start_step": result.start_step, "steps_run": result.steps_run,
                   "seconds": round(result.seconds, 3),
                   "tokens_per_s": round(result.tokens_per_s, 1),
                   **{k: result.last_metrics[k] for k in ("loss", "accuracy")
                      if k in result.last_metrics}}
        print(json.dumps(summary))
    return 0

"""`coderl train --config configs/X.py [--config.a.b=v ...] --workdir W`.

Runs the stage the config names (train.stage: warmup, critic, offline_rl, online_rl), resuming
from the workdir's latest checkpoint. Writes checkpoints/, metrics.jsonl, tensorboard/ and the
final model (model/) under the workdir.
"""
from __future__ import annotations

import argparse
import json
import sys
import types

OVERRIDE_PREFIX = "--config."


def register(sub) -> None:
    p = sub.add_parser("train", help="train a stage (warm-up, critic, offline or online RL) "
                                     "from a config",
                       description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    p.add_argument("--workdir", required=True,
                   help="checkpoints, metrics.jsonl, tensorboard/ and the final model/ go here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.epilog = ("Override any config field with --config.SECTION.FIELD=VALUE, e.g. "
                "--config.train.num_steps=10 --config.mesh.ici_parallelism='(2,2,2)'.")
    _accept_overrides(p)
    p.set_defaults(func=run)


def _accept_overrides(parser: argparse.ArgumentParser) -> None:
    """Let this parser take `--config.a.b=v` / `--config.a.b v` (collected in args.overrides)."""
    original = parser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        rest, overrides = [], []
        i = 0
        while i < len(args):
            a = args[i]
            if a.startswith(OVERRIDE_PREFIX):
                if "=" in a:
                    overrides.append(a[len("--"):])
                elif i + 1 < len(args):
                    overrides.append(a[len("--"):] + "=" + args[i + 1])
                    i += 1
                else:
                    parser.error(f"{a} needs a value")
            else:
                rest.append(a)
            i += 1
        ns, extra = original(rest, namespace)
        ns.overrides = overrides
        return ns, extra

    parser.parse_known_args = types.MethodType(parse_known_args, parser)


def run(args) -> int:
    from coderl_jax.config import load_config
    from coderl_jax.train.run import run_config, train_stage

    cfg = load_config(args.config, getattr(args, "overrides", []))
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

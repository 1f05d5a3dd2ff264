"""`coderl demo --workdir W [--config configs/demo.py] [--config.a.b=v ...]`.

The whole CodeRL loop on the bundled demo problems with the tiny model (SPEC §8): warm-up,
critic data, critic, offline RL, online RL, plain vs critical sampling, export to PyTorch.
Writes report.json, report.md and PNG plots under the workdir (each stage in its own folder,
replaced when the demo runs again) and prints report.md.
"""
from __future__ import annotations

from coderl_jax.commands import arguments


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole CodeRL loop on the bundled problem set",
                       description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="demo_workdir",
                   help="stage folders, report.json, report.md and plots go here")
    arguments.add_no_progress(p)
    arguments.add_config(p, run, required=False,
                         help="the demo's settings (default: the shipped configs/demo.py)",
                         example="--config.warmup.train.num_steps=100 --config.eval.limit=20")


def run(args) -> int:
    from coderl_jax import paths
    from coderl_jax.config import load_config
    from coderl_jax.demo import default_config_path, run_demo
    from coderl_jax.errors import UserError

    path = args.config or default_config_path()
    if args.config is None and not path.is_file():
        raise UserError(f"the package ships no configs/demo.py ({path}); pass --config")
    cfg = load_config(path, args.overrides)
    run_demo(cfg, args.workdir, progress=not args.no_progress)
    print((paths.as_path(args.workdir) / "report.md").read_text())
    return 0

"""`coderl benchmark train|sample|execute|all`: throughput, one JSON line with --json."""
from __future__ import annotations

import importlib
import json

KINDS = {
    "train": "training tokens/s (forward+backward+AdamW) vs HF PyTorch T5",
    "sample": "generated tokens/s of the jitted sampler vs HF generate",
    "execute": "programs/s of the sandbox pool vs one fresh interpreter per program",
    "all": "train, sample and execute at one size in one table (MFU on an accelerator)",
}


def _module(kind: str):
    return importlib.import_module(f"coderl_jax.benchmarks.{kind}")


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="throughput benchmarks")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for kind, help_text in KINDS.items():
        try:
            mod = _module(kind)
        except ModuleNotFoundError as e:
            if e.name != f"coderl_jax.benchmarks.{kind}":
                raise
            continue
        kp = kinds.add_parser(kind, help=help_text)
        mod.add_arguments(kp)
        kp.add_argument("--json", action="store_true", help="print one JSON line")
        kp.set_defaults(func=_runner(mod))
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def _runner(mod):
    def run(args) -> int:
        result = mod.run(args)
        if args.json:
            print(json.dumps(result))
        elif hasattr(mod, "format_text"):
            print(mod.format_text(result))
        else:
            for key, value in result.items():
                print(f"{key:>28}: {value}")
        return 0

    return run

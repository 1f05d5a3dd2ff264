"""The `coderl` command: parses arguments and calls library code in `coderl_jax.commands`.

Each subcommand lives in its own module `coderl_jax/commands/<name>.py` exposing
`register(subparsers)`, which adds its parser and sets `func=run` (a function of the parsed args
returning an exit code). Modules are imported lazily so `coderl --help` stays fast and a command
never pays for another's imports (JAX is not imported by `run-tests`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from coderl_jax.errors import UserError

# (command name, module under coderl_jax.commands, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("convert", "convert", "convert checkpoints between HF/PyTorch and orbax"),
    ("generate", "generate", "sample or greedily decode programs for problems"),
    ("run-tests", "run_tests", "execute programs against unit tests in the sandbox"),
    ("evaluate", "evaluate", "pass@k and n@k from execution results"),
    ("train", "train", "train a stage (warm-up, critic, offline or online RL) from a config"),
    ("critic-score", "critic_score", "critic outcome probabilities per program and token"),
    ("critic-data", "critic_data", "sample N + greedy programs per problem and execute them "
                                   "(critic / RL training data)"),
    ("critical-sampling", "critical_sampling", "CodeRL inference with refine/repair rounds"),
    ("data", "data", "build TFDS datasets"),
    ("benchmark", "benchmark", "throughput benchmarks"),
    ("demo", "demo", "the whole CodeRL loop on the bundled problem set"),
]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (exit 2), like UserError."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just that subcommand's module is imported."""
    parser = _Parser(prog="coderl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module, help_text in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        importlib.import_module(f"coderl_jax.commands.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {name for name, _, _ in COMMANDS}
    parser = build_parser(only=first if first in known else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"coderl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coderl: interrupted", file=sys.stderr)
        return 130

"""The `coderl` command: parses arguments and calls library code in `coderl_jax.commands`.

Each subcommand lives in its own module `coderl_jax/commands/<name>.py` exposing
`register(subparsers)`, which adds its parser and sets `func=run` (a function of the parsed args
returning an exit code). Modules are imported lazily so `coderl --help` stays fast and a command
never pays for another's imports (JAX is not imported by `run-tests`).

Settings: a command that reads a config file (`train`, `demo`, `critical-sampling`) takes it as
`--config FILE[:ARG]` and changes any field with `--config.FIELD=VALUE` (nested:
`--config.SECTION.FIELD=VALUE`), which wins over the file; its other flags name inputs, outputs
and run control. Such a command's register() sets `takes_overrides=True`; `parse_args` hands
the overrides over as `args.overrides`.
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; `--config.FIELD=VALUE` overrides land in `args.overrides`
    (a usage error, exit 2, for a command that reads no config file)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {name for name, _, _ in COMMANDS}
    parser = build_parser(only=first if first in known else None)
    rest, overrides = argv, []
    if any(a.startswith("--config.") for a in argv):
        from coderl_jax.config import split_overrides  # ml_collections: only when needed

        try:
            rest, overrides = split_overrides(argv)
        except UserError as e:
            parser.error(str(e))
    args = parser.parse_args(rest)
    if overrides and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(overrides)} (only train, demo and "
                     "critical-sampling take --config.FIELD=VALUE)")
    args.overrides = overrides
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not getattr(args, "func", None):
        build_parser().print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"coderl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coderl: interrupted", file=sys.stderr)
        return 130

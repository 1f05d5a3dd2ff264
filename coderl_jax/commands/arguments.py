"""Arguments several commands share, written once: where problems come from, the tokenizer,
progress bars and the `--config` file that `--config.FIELD=VALUE` overrides (see `cli.py`)."""
from __future__ import annotations

PROBLEMS_HELP = "SRC: APPS split or problem folder, MBPP .jsonl, 'humaneval' or 'demo'"
TOKENIZER_HELP = ("tokenizer folder (default: the checkpoint's own, else $CODERL_TOKENIZER or "
                  "the packaged CodeT5 one)")


def add_problems(p, required: bool = True, split_help: str = "split of SRC where it has several"
                 ) -> None:
    """--problems SRC and --split."""
    p.add_argument("--problems", required=required, default=None, help=PROBLEMS_HELP)
    p.add_argument("--split", default=None, help=split_help)


def add_tokenizer(p) -> None:
    p.add_argument("--tokenizer", default=None, help=TOKENIZER_HELP)


def add_no_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_config(p, func, *, required: bool, help: str, example: str) -> None:
    """--config FILE, whose fields `--config.FIELD=VALUE` overrides; `func` runs the command."""
    p.add_argument("--config", required=required, default=None, help=help)
    p.epilog = f"Override a setting with --config.FIELD=VALUE, e.g. {example}."
    p.set_defaults(func=func, takes_overrides=True)

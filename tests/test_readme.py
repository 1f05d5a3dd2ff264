"""Every command the README shows is real: each `coderl ...` line parses with the CLI's own
parser (subcommand and every flag exist), each config it names loads (with its topology), and
each launch script it names exists. What the commands do is tested by the command's own tests,
the evaluation-recipe tests (which run that section's commands) and the demo test."""
import re
import shlex

import pytest

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def command_lines():
    """Command lines of the README's code blocks, continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("coderl ", "python configs/", "launch/", "sbatch ", "make ")):
                lines.append(line)
    return lines


def argv(line):
    """The command's words, `$VAR`s as placeholder paths, a trailing `> FILE` dropped."""
    words = shlex.split(re.sub(r"\$(\w+)", r"/placeholder/\1", line))
    return words[:words.index(">")] if ">" in words else words


def test_readme_shows_many_commands():
    kinds = {argv(line)[1] for line in command_lines() if line.startswith("coderl ")}
    # every stage of the pipeline appears
    assert {"train", "critic-data", "critic-score", "generate", "run-tests", "evaluate",
            "critical-sampling", "convert", "demo", "benchmark", "data"} <= kinds


@pytest.mark.parametrize("line", [c for c in command_lines() if c.startswith("coderl ")])
def test_coderl_command_parses(line):
    from coderl_jax.cli import parse_args

    # exits (SystemExit) on an unknown flag or subcommand, or an override where none is taken
    parsed = parse_args(argv(line)[1:])
    assert getattr(parsed, "func", None) is not None, line
    config = getattr(parsed, "config", None)
    if isinstance(config, str) and config.startswith("configs/"):
        from coderl_jax.config import load_config

        load_config(REPO / config)  # exists, loads, takes its topology argument


@pytest.mark.parametrize("line", [c for c in command_lines()
                                  if c.startswith(("launch/", "sbatch "))])
def test_launch_command_names_a_script_and_config(line):
    words = argv(line)
    script = next(w for w in words if w.startswith("launch/"))
    assert (REPO / script).is_file(), script
    if "--config" in words:
        from coderl_jax.config import load_config

        load_config(REPO / words[words.index("--config") + 1])

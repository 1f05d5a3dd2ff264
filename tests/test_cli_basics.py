"""The CLI's shared behaviour: help, unknown commands, one-line errors."""
import subprocess
import sys

import pytest

from coderl_jax import config
from coderl_jax.errors import UserError


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "coderl_jax", *args], capture_output=True,
                          text=True, timeout=120)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for name in ("convert", "generate", "run-tests", "evaluate", "train", "demo"):
        assert name in r.stdout


def test_unknown_command_is_one_line_error():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) >= 1


def test_override_parsing(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("import ml_collections\n"
                 "def get_config():\n"
                 "    c = ml_collections.ConfigDict()\n"
                 "    c.train = ml_collections.ConfigDict("
                 "dict(lr=1e-3, steps=10, on=False, name='a'))\n"
                 "    return c\n")
    c = config.load_config(f, ["--config.train.lr=2", "train.steps=5", "train.on=true",
                               "train.name=bb"])
    assert c.train.lr == 2.0 and isinstance(c.train.lr, float)
    assert c.train.steps == 5 and c.train.on is True and c.train.name == "bb"
    with pytest.raises(UserError, match="unknown config key"):
        config.load_config(f, ["train.nope=1"])
    with pytest.raises(UserError, match="not found"):
        config.load_config(tmp_path / "missing.py")

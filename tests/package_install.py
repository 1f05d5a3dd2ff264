"""`pip install .` (not editable) of this checkout into a fresh venv, as a user installs it.

The fresh venv reaches its dependencies through a .pth line naming this interpreter's
site-packages instead of downloading them (minutes, and PyPI only); the package itself is built
by this environment's setuptools and installed for real. One install serves the session:
test_packaging.py checks what was installed, test_demo.py runs `coderl demo` of it from
another folder."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO


@dataclasses.dataclass(frozen=True)
class Installed:
    venv: Path       # the fresh venv
    python: Path     # its interpreter
    site: Path       # its site-packages, where coderl_jax was installed
    source: Path     # the copy of the checkout that was installed
    elsewhere: Path  # an empty folder outside the checkout to run commands from
    env: dict        # the environment to run them in: no PYTHONPATH, no CODERL_TOKENIZER


def copy_checkout(dest: Path) -> Path:
    """The files of this checkout a clone would have (tracked and not ignored), copied."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co",
                              "--exclude-standard"], capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f and (REPO / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "build", "*.egg-info", "demo_workdir"))
        return dest
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dest / f)
    return dest


def run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    """Run a command; a non-zero exit fails the test with the ends of its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def install_checkout(tmp: Path) -> Installed:
    source = copy_checkout(tmp / "clone")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "deps.pth").write_text("".join(f"{p}\n" for p in sorted(here)))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODERL_TOKENIZER")}
    # pip (this environment's, run by the venv's python) builds and installs the package
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", source], elsewhere, env)
    return Installed(venv, python, site, source, elsewhere, env)

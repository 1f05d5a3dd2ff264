"""The package's layering, read from its source with ast (nothing is imported).

- Only `cli.py` and `commands/` may import `coderl_jax.commands` (library code never depends on
  the command line; `__main__` reaches it through `cli`).
- No import cycle among the package's modules. Every import counts, top-level and
  function-local: a function-local import is still a dependency (it runs on first call), so
  hiding a cycle inside a function would only move the failure to run time.
  `if TYPE_CHECKING:` blocks count too. Only `importlib` calls with computed names escape the
  graph (cli.py and commands/benchmark.py use them to pick one command module lazily).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coderl_jax"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` (a package folder)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _target(name: str, known: dict) -> str | None:
    """The longest prefix of dotted `name` that is one of the package's modules."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line of the first such import}."""
    known = modules(root)
    graph: dict[str, dict[str, int]] = {m: {} for m in known}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                names = [f"{base}.{a.name}" for a in node.names]
            for name in names:
                target = _target(name, known)
                if target is not None and target != mod:
                    graph[mod].setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _in_commands(mod: str) -> bool:
    return mod == "coderl_jax.commands" or mod.startswith("coderl_jax.commands.")


def test_library_modules_do_not_import_commands():
    bad = [f"{mod} line {line} imports {target}"
           for mod, targets in import_graph().items()
           if mod != "coderl_jax.cli" and not _in_commands(mod)
           for target, line in targets.items() if _in_commands(target)]
    assert not bad, "library code imports the command layer:\n" + "\n".join(bad)


def test_package_has_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    detail = ["  " + " <-> ".join(c) + ": " + ", ".join(
        f"{a} line {graph[a][b]} -> {b}" for a in c for b in graph[a] if b in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


# Library modules whose functions import the package's own modules, and why that buys something.
# Everywhere else such imports go at the top (`cli.py` and `commands/` import lazily so that
# `coderl --help` starts without JAX).
LAZY_IMPORTS_ALLOWED = {
    # a benchmark's reference side runs in a process of its own that must not load JAX
    "coderl_jax.benchmarks.sample": "JAX-side modules, in the function that times our side",
    "coderl_jax.benchmarks.train": "JAX-side modules, in the function that times our side",
    # TensorFlow Datasets is optional and heavy; reading a prepared dataset does not need it
    "coderl_jax.data.tfds.read": "the TFDS builders, when preparing",
    # the sandbox's own processes import the package; its __init__ must not start the pool's
    "coderl_jax.execution": "the pool, on first use",
    # the untrusted program's runtime is loaded in the fork server only, not in the host's pool
    "coderl_jax.execution.sandbox": "the program runtime, in the fork server",
    # the worker binds itself to its CPU before it loads the sandbox's modules
    "coderl_jax.execution.worker": "the sandbox's modules, after CPU binding",
}


def function_local_imports(root: Path = PACKAGE) -> dict[str, list[int]]:
    """module -> lines where a function imports a module of the package."""
    known, out = modules(root), {}
    for mod, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in top:
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""])
                own = (isinstance(node, ast.ImportFrom) and node.level) or any(
                    n == "coderl_jax" or n.startswith("coderl_jax.") for n in names)
                if own:
                    out.setdefault(mod, []).append(node.lineno)
    return out


def test_function_local_imports_only_where_they_buy_something():
    found = function_local_imports()
    bad = [f"{mod} lines {lines}" for mod, lines in found.items()
           if mod != "coderl_jax.cli" and not _in_commands(mod) and mod not in LAZY_IMPORTS_ALLOWED]
    assert not bad, ("function-local imports of the package outside cli/commands (import at the "
                     "top, or add the module to LAZY_IMPORTS_ALLOWED with why):\n" + "\n".join(bad))
    stale = sorted(set(LAZY_IMPORTS_ALLOWED) - set(found))
    assert not stale, f"LAZY_IMPORTS_ALLOWED lists modules that import nothing lazily: {stale}"


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "coderl_jax"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_the_checks_see_function_local_and_relative_imports(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "commands/__init__.py": "",
        "commands/gen.py": "def load(): pass\n",
        "cli.py": "from coderl_jax.commands import gen\n",
        "a.py": "def f():\n    from coderl_jax.b import g\n",
        "b.py": "from . import a\n",
        "lib.py": "def f():\n    from coderl_jax.commands.gen import load\n",
    })
    graph = import_graph(pkg)
    assert graph["coderl_jax.cli"] == {"coderl_jax.commands.gen": 1}
    assert graph["coderl_jax.lib"] == {"coderl_jax.commands.gen": 2}
    assert cycles(graph) == [["coderl_jax.a", "coderl_jax.b"]]
    assert cycles({"x": {"y": 1}, "y": {"z": 1}, "z": {}}) == []
    assert function_local_imports(pkg) == {"coderl_jax.a": [2], "coderl_jax.lib": [2]}

"""Resolve SPEC §2's SRC (where problems come from) to a list of `Problem` records.

SRC is one of (local or on a gs:// bucket): an APPS split folder, one APPS problem folder, an
MBPP `.jsonl` file, the word
`humaneval`, the word `demo` (the bundled problem set; `demo:N` with N times its training
problems per family, the same held-out ones), or a prepared TFDS dataset folder (one
holding `dataset_info.json`, as `coderl data prepare` writes). `split` picks a part where the
source has several (MBPP: train/test/validation/prompt; demo: train/heldout; TFDS: its splits).
"""
from __future__ import annotations

from coderl_jax import paths
from coderl_jax.data.apps import is_problem_dir, load_apps
from coderl_jax.data.demo import load_demo
from coderl_jax.data.humaneval import load_humaneval
from coderl_jax.data.mbpp import load_mbpp
from coderl_jax.data.records import Problem
from coderl_jax.data.tfds.read import load_prepared
from coderl_jax.errors import UserError


def demo_scale(src: str) -> int:
    """N of `demo:N` (N times the demo's training problems per family); 1 for `demo`."""
    if src == "demo":
        return 1
    text = src.partition(":")[2]
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"problems {src!r}: write demo:N with N a whole number >= 1")
    return int(text)


def load_problems(src: str, split: str | None = None) -> list[Problem]:
    """Problems of SRC (see module docstring); a UserError says what SRC may be."""
    src = str(src)
    if src == "humaneval":
        if split not in (None, "test"):
            raise UserError(f"HumanEval has only a 'test' split, not {split!r}")
        return load_humaneval()
    if src == "demo" or src.startswith("demo:"):
        return load_demo(split=split, train_scale=demo_scale(src))
    path = paths.as_path(src)
    if paths.is_remote(path):  # the readers below read local files: copy it down first
        if not path.exists():
            paths.check_bucket(path)
            raise UserError(f"problems not found: {src!r}")
        with paths.local_copy(path) as local:
            return load_problems(str(local), split)
    if path.is_file():
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            if "humaneval" in path.name.lower():
                return load_humaneval(path)

            return load_mbpp(path, split=split)
        raise UserError(f"{path}: a problems file must be an MBPP .jsonl file")
    if path.is_dir():
        if (path / "dataset_info.json").is_file():
            return load_prepared(path, split=split)

        if split is None or is_problem_dir(path) or path.name == split:
            return load_apps(path)
        if (path / split).is_dir():
            return load_apps(path / split)
        raise UserError(f"{path}: no APPS split folder {split!r} inside")
    raise UserError(f"problems not found: {src!r} is not a file, a folder, 'humaneval' or 'demo' "
                    "(expected an APPS split or problem folder, an MBPP .jsonl file, "
                    "'humaneval', 'demo' or a prepared TFDS dataset folder)")


def problems_by_id(problems: list[Problem]) -> dict[str, Problem]:
    """`{problem_id: problem}`; duplicate ids are an error (they would mix up results)."""
    table: dict[str, Problem] = {}
    for p in problems:
        if p.problem_id in table:
            raise UserError(f"duplicate problem id {p.problem_id!r}")
        table[p.problem_id] = p
    return table

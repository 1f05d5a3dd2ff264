"""CodeRL's on-disk layout of critic / RL training data (read and write): either implementation
feeds the other.

    <root>/<problem_id>/gen_solutions.json       [{"code", "result", "error_type"}, ...]
    <root>/<problem_id>/baseline_solutions.json  [{"code", "result"}]     (the greedy program)

CodeRL stores `result` as JSON `true` (passed), `false` (failed tests), `-1` (runtime error) or
`-2` (compile error); rows in this project use SPEC §4 integers. Both are accepted on reading.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Iterable

from etils import epath

from coderl_jax import paths
from coderl_jax.errors import UserError
from coderl_jax.files import atomic_write
from coderl_jax.paths import PathLike
from coderl_jax.rl.rewards import normalize_result

GEN_FILE = "gen_solutions.json"
BASELINE_FILE = "baseline_solutions.json"


def to_coderl_result(result: int):
    """SPEC §4 code -> CodeRL's JSON value."""
    r = normalize_result(result)
    return {1: True, 0: False}.get(r, r)


def write_layout(root: PathLike, sample_rows: Iterable[dict],
                 greedy_rows: Iterable[dict] = ()) -> int:
    """Write executed rows (with `problem_id`, `code`, `result`, `error_type`) per problem.

    Returns the number of problem folders written. Each file is written atomically.
    """
    root = paths.as_path(root)
    samples: dict[str, list] = defaultdict(list)
    for row in sample_rows:
        samples[str(row["problem_id"])].append(
            {"code": row["code"], "result": to_coderl_result(row["result"]),
             "error_type": row.get("error_type", "")})
    greedy: dict[str, list] = {}
    for row in greedy_rows:
        greedy[str(row["problem_id"])] = [
            {"code": row["code"], "result": to_coderl_result(row["result"])}]
    for pid in sorted(set(samples) | set(greedy)):
        folder = root / pid
        if pid in samples:
            with atomic_write(folder / GEN_FILE) as f:
                json.dump(samples[pid], f)
        if pid in greedy:
            with atomic_write(folder / BASELINE_FILE) as f:
                json.dump(greedy[pid], f)
    return len(set(samples) | set(greedy))


def _read_list(path: epath.Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON ({e.msg})") from e
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of solutions")
    return data


def read_layout(root: PathLike) -> tuple[list[dict], dict[str, int]]:
    """Read a CodeRL layout back: (sample rows with SPEC §4 results, greedy result per problem)."""
    root = paths.as_path(root)
    if not root.is_dir():
        raise UserError(f"critic data folder not found: {root}")
    rows, greedy = [], {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        pid = folder.name
        gen = folder / GEN_FILE
        if gen.is_file():
            for i, sol in enumerate(_read_list(gen)):
                try:
                    result = normalize_result(sol["result"])
                    code = sol["code"]
                except (KeyError, TypeError, ValueError) as e:
                    raise UserError(f"{gen}: solution {i} is malformed ({e})") from e
                rows.append({"problem_id": pid, "sample_index": i, "code": code,
                             "result": result, "error_type": sol.get("error_type", "")})
        base = folder / BASELINE_FILE
        if base.is_file():
            sols = _read_list(base)
            if sols:
                try:
                    greedy[pid] = normalize_result(sols[0]["result"])
                except (KeyError, TypeError, ValueError) as e:
                    raise UserError(f"{base}: malformed baseline ({e})") from e
    return rows, greedy

"""Host-side file helpers: atomic writes and JSON-lines reading with clear errors, for local
paths and gs:// alike (see `coderl_jax.paths`)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Iterable, Iterator

from coderl_jax import paths
from coderl_jax.errors import UserError
from coderl_jax.paths import PathLike


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside `path`; on success rename it over `path`, else delete it.

    On a bucket the content gathers in memory and is uploaded as one object on success (an
    object appears whole or not at all); on failure nothing is written."""
    if paths.is_remote(path):
        target = paths.as_path(path)
        paths.check_bucket(target)
        buf = io.BytesIO() if "b" in mode else io.StringIO()
        yield buf
        if "b" in mode:
            target.write_bytes(buf.getvalue())
        else:
            target.write_text(buf.getvalue(), encoding="utf-8")
        return
    path = paths.absolute(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines atomically; returns the number written."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    return n


def write_json(path: PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def read_jsonl(path: PathLike) -> list[dict]:
    """Read JSON lines; a missing file or an invalid line is a UserError naming file and line."""
    return [row for _, row in iter_jsonl(path)]


def iter_jsonl(path: PathLike) -> Iterator[tuple[str, dict]]:
    """(`file:line`, row) for each JSON object of a JSON-lines file, streamed; errors as
    `read_jsonl`'s."""
    path = paths.as_path(path)
    if not path.is_file():
        paths.check_bucket(path)
        raise UserError(f"file not found: {path}")
    with path.open("r", encoding="utf-8") as f:
        for _, where, row in json_lines(f, path):
            if not isinstance(row, dict):
                raise UserError(f"{where}: expected a JSON object per line")
            yield where, row


def json_lines(lines: Iterable[str], name: Any) -> Iterator[tuple[int, str, Any]]:
    """(line number, `name:line`, value) of each non-blank line; invalid JSON is a UserError."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            yield lineno, where, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: invalid JSON ({e.msg})") from e

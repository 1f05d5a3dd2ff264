"""Every path a user names, a local folder or a bucket (`gs://bucket/...`), as one type.

`as_path` turns a str or os.PathLike into an `etils.epath.Path`: the local file system for plain
paths, Google Cloud Storage (through gcsfs) for `gs://`. orbax and tensorstore take these paths
as they are. A bucket has no rename and no append, so the few operations that need them here
(`replace_dir`, `Appender`) do what a bucket can: write objects whole, newest state last.
(epath would switch to tf.io.gfile wherever TensorFlow is installed; `EPATH_USE_TF=false`, set
here unless the environment says otherwise, keeps gcsfs, the client tested.) Point the clients
at a GCS emulator with `STORAGE_EMULATOR_HOST` (gcsfs, also behind TensorBoard's files, see
`train/tensorboard.py`) and `TENSORSTORE_GCS_HTTP_URL` (orbax's array writes).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import IO, Iterator, Union

from etils import epath

from coderl_jax.errors import UserError

Path = epath.Path
PathLike = Union[str, os.PathLike]
REMOTE_PREFIXES = ("gs://",)


def _no_stale_listings() -> None:
    """gcsfs caches folder listings forever by default, so checkpoints another process (a
    killed run, another host of a pod) wrote would stay invisible; list afresh every time."""
    import fsspec.config

    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)


_no_stale_listings()
os.environ.setdefault("EPATH_USE_TF", "false")


def is_remote(path: PathLike) -> bool:
    """Whether `path` names an object store (gs://) rather than the local file system."""
    return os.fspath(path).startswith(REMOTE_PREFIXES)


def as_path(path: PathLike) -> epath.Path:
    """`path` as an epath.Path; a bucket path is checked for its bucket name."""
    text = os.fspath(path)
    if is_remote(text) and not bucket_of(text):
        raise UserError(f"{text}: no bucket name (expected gs://BUCKET/...)")
    return epath.Path(text)


def absolute(path: PathLike) -> epath.Path:
    """`as_path(path)` made absolute: local paths against the working folder, bucket paths as
    they are (pathlib's `absolute()` would turn `gs://b/x` into `./gs:/b/x`)."""
    p = as_path(path)
    return p if is_remote(p) else epath.Path(os.path.abspath(os.fspath(p)))


def bucket_of(path: PathLike) -> str:
    """The bucket name of a gs:// path ('' for a local path)."""
    text = os.fspath(path)
    for prefix in REMOTE_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix):].split("/", 1)[0]
    return ""


def check_bucket(path: PathLike) -> None:
    """For a gs:// path, a UserError when its bucket is missing or cannot be reached (each
    bucket found is remembered, so this costs one request per bucket and process)."""
    if not is_remote(path):
        return
    bucket = bucket_of(path)
    if bucket in _FOUND_BUCKETS:
        return
    try:
        found = epath.Path(f"gs://{bucket}").exists()
    except Exception as e:  # credentials, network: say which, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot reach gs://{bucket}: {first[:300]}") from e
    if not found:
        raise UserError(f"bucket not found: gs://{bucket} (for {os.fspath(path)})")
    _FOUND_BUCKETS.add(bucket)


_FOUND_BUCKETS: set[str] = set()


def require_exists(path: PathLike, what: str = "file") -> epath.Path:
    """`as_path(path)`, or a UserError naming a missing bucket or a missing `what`."""
    p = as_path(path)
    check_bucket(p)  # first: a missing bucket or bad credentials say so in one line
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    return p


def make_dirs(path: PathLike) -> epath.Path:
    """Create the folder `path` (a no-op on a bucket beyond checking it exists: objects need no
    folders there)."""
    p = as_path(path)
    if is_remote(p):
        check_bucket(p)
    else:
        p.mkdir(parents=True, exist_ok=True)
    return p


def rmtree(path: PathLike) -> None:
    """Remove a folder and everything under it; nothing if it is absent."""
    p = as_path(path)
    with contextlib.suppress(FileNotFoundError):
        if p.exists():
            p.rmtree()


def replace_dir(src: PathLike, dst: PathLike) -> None:
    """Put the folder `src` at `dst`, removing what `dst` held. Locally one rename (atomic);
    on a bucket every object is copied, then `src` removed."""
    src, dst = as_path(src), as_path(dst)
    if not is_remote(dst):
        old = None
        if dst.exists():
            old = dst.parent / f".{dst.name}.old"
            rmtree(old)
            os.replace(dst, old)
        os.replace(src, dst)
        if old is not None:
            rmtree(old)
        return
    rmtree(dst)
    _copy_tree(src, dst)
    rmtree(src)


def _copy_tree(src: epath.Path, dst: epath.Path) -> None:
    """Copy every file under `src` to the same place under `dst` (either side a bucket).
    (epath's `walk` drops the gs:// scheme from the folders it yields, so iterdir is used.)"""
    for child in src.iterdir():
        if child.is_dir():
            if not is_remote(dst):
                (dst / child.name).mkdir(parents=True, exist_ok=True)
            _copy_tree(child, dst / child.name)
        else:
            child.copy(dst / child.name, overwrite=True)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[epath.Path]:
    """`path` as a local file or folder of the same name: itself when local, else a temporary
    copy of the bucket's file or folder (for readers that need real files: safetensors,
    array_record, transformers), removed afterwards."""
    p = as_path(path)
    if not is_remote(p):
        yield p
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="coderl-") as tmp:
        local = epath.Path(tmp) / p.name
        if p.is_dir():
            local.mkdir()
            _copy_tree(p, local)
        else:
            p.copy(local)
        yield local


def replace_file(src: PathLike, dst: PathLike) -> None:
    """Move the file `src` over `dst`: one rename locally; on a bucket a copy, then delete."""
    src, dst = as_path(src), as_path(dst)
    if is_remote(src) or is_remote(dst):
        src.copy(dst, overwrite=True)
        src.unlink()
    else:
        os.replace(src, dst)


class Appender:
    """A text file open for appending. Locally a plain append-mode file whose `flush` reaches
    the disk. A bucket has no appends: written text waits in memory and `flush` rewrites the
    object as what it holds now plus that text, at most every `remote_every_s` seconds unless
    forced, and always on close (so other writers' appends in between are kept)."""

    def __init__(self, path: PathLike, remote_every_s: float = 30.0):
        self.path = as_path(path)
        self._every = remote_every_s
        self._pending: list[str] = []
        self._uploaded = time.monotonic()
        self._file: IO[str] | None = None
        if not is_remote(self.path):
            self._file = open(self.path, "a", encoding="utf-8")

    def write(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text)
        else:
            self._pending.append(text)

    def flush(self, force: bool = False) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        elif self._pending and (force or time.monotonic() - self._uploaded >= self._every):
            old = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            self.path.write_text(old + "".join(self._pending), encoding="utf-8")
            self._pending = []
            self._uploaded = time.monotonic()

    def close(self) -> None:
        self.flush(force=True)
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


@contextlib.contextmanager
def open_append(path: PathLike, remote_every_s: float = 30.0) -> Iterator[Appender]:
    with Appender(path, remote_every_s) as f:
        yield f

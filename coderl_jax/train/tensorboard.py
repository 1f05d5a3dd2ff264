"""TensorBoard event files on a bucket through `coderl_jax.paths` (etils.epath), no TensorFlow.

tensorboardX picks a record writer by the log folder's URL scheme. Its own `gs://` writer
re-uploads the file again when garbage-collected, after `close()` (at interpreter exit, once the
bucket may be unreachable, it retries for minutes). `use_epath_for_buckets()` registers this
module's writer instead: the events gather in memory and the whole object is uploaded at most
every `every_s` seconds when flushed, and on close; nothing happens after close.
"""
from __future__ import annotations

import io
import time

from coderl_jax import paths

EVERY_S = 30.0


class BucketRecordWriter:
    """The file object tensorboardX writes one event file's records to."""

    def __init__(self, path: str, every_s: float = EVERY_S):
        self.path = paths.as_path(path)
        self.every_s = every_s
        self._buffer = io.BytesIO()
        self._uploaded = 0.0  # the first flush uploads (the file appears at once)
        self._dirty = True
        self._closed = False

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        self._dirty = True

    def flush(self, force: bool = False) -> None:
        if self._closed or not self._dirty:
            return
        if force or time.monotonic() - self._uploaded >= self.every_s:
            self.path.write_bytes(self._buffer.getvalue())
            self._uploaded = time.monotonic()
            self._dirty = False

    def close(self) -> None:
        self.flush(force=True)
        self._closed = True


class _Factory:
    def __init__(self, every_s: float):
        self.every_s = every_s

    def open(self, path: str) -> BucketRecordWriter:
        return BucketRecordWriter(path, self.every_s)

    def directory_check(self, path: str) -> None:
        paths.check_bucket(path)  # objects need no folders


def use_epath_for_buckets(every_s: float = EVERY_S) -> None:
    """Send tensorboardX's writes to gs:// through this module's writer."""
    from tensorboardX import record_writer

    for prefix in paths.REMOTE_PREFIXES:
        record_writer.register_writer_factory(prefix.split(":")[0], _Factory(every_s))

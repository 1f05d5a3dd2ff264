"""A real GCS server for tests: `gcp-storage-emulator` on 127.0.0.1, and the environment that
points every client at it (each by its documented emulator setting).

One gap in the emulator is filled here: GCS sends `x-goog-generation` with every object
download, and tensorstore (orbax's array writer) needs it for its conditional writes
("Malformed StorageGeneration" without it); the emulator's download route does not send it, so
`emulator()` wraps that route to add it from the object's stored metadata.
"""
from __future__ import annotations

import contextlib
import socket
from typing import Iterator


def _patch_download() -> None:
    """Make every object download (the download route and `alt=media` GETs) send the
    object's generation headers."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    if getattr(original, "sends_generation", False):
        return

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"],
                                       request.params["object_id"])
        except NotFound:
            return
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))

    download.sends_generation = True
    objects.download = download  # objects.get(alt=media) calls it by this name
    for _, handlers in server.HANDLERS:
        if handlers.get(server.GET) is original:
            handlers[server.GET] = download


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(url: str) -> dict[str, str]:
    """Environment variables that send gcsfs (epath, so every file but orbax's arrays) and
    tensorstore (orbax's arrays) to the emulator at `url`."""
    return {
        "STORAGE_EMULATOR_HOST": url,  # gcsfs (and google-cloud-storage)
        "TENSORSTORE_GCS_HTTP_URL": url,  # tensorstore's documented alternative-server setting
        # tensorstore's fixed test token: no search for Google credentials (there are none here)
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
        "GOOGLE_CLOUD_PROJECT": "test-project",  # gcsfs: a project for bucket-level calls
        # gcsfs asks the storage-control API whether a bucket is zonal; an emulator has no such
        # API (and no credentials to ask with), so use plain GCS directly.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


@contextlib.contextmanager
def emulator(bucket: str) -> Iterator[str]:
    """Run an in-memory emulator holding one empty `bucket`; yields its URL."""
    from gcp_storage_emulator.server import create_server

    _patch_download()
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

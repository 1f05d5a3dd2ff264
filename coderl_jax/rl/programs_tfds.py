"""Executed program rows as a TFDS dataset (array_record; splits `samples`, `greedy`).

`coderl critic-data` writes one under `array_record/` (`write_tfds`); `rl.programs` reads it
back (`read_tfds_rows`), in row order.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from etils import epath

from coderl_jax import paths
from coderl_jax.errors import UserError
from coderl_jax.paths import PathLike


def _builder_cls():
    import tensorflow_datasets as tfds

    class CriticDataBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Executed programs (splits `samples`, `greedy`) as array_record, one row each."""

        name = "coderl_critic_data"
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Executed sampled and greedy programs (coderl-jax)."}

        def __init__(self, *, splits: dict[str, list[dict]] | None = None, **kwargs):
            self._splits = splits or {}
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "index": np.int64,  # row order (TFDS shuffles keys)
                "problem_id": tfds.features.Text(),
                "sample_index": np.int32,
                "code": tfds.features.Text(),
                "result": np.int32,
                "error_type": tfds.features.Text(),
                "output_ids": tfds.features.Sequence(np.int32),
                "prompt_ids": tfds.features.Sequence(np.int32),
            }), description="CodeRL critic data: programs with their unit-test outcomes.")

        def _split_generators(self, dl_manager):  # noqa: ARG002 (tfds.core.GeneratorBasedBuilder)
            return {name: self._generate_examples(rows) for name, rows in self._splits.items()}

        def _generate_examples(self, rows) -> Iterator[tuple[str, dict]]:
            for i, r in enumerate(rows):
                yield f"{i:08d}", {
                    "index": i, "problem_id": str(r["problem_id"]),
                    "sample_index": int(r["sample_index"]),
                    "code": r["code"], "result": int(r["result"]),
                    "error_type": str(r.get("error_type", "")),
                    "output_ids": np.asarray(r.get("output_ids", []), np.int32),
                    "prompt_ids": np.asarray(r.get("prompt_ids", []), np.int32)}

    return CriticDataBuilder


def write_tfds(folder: PathLike, samples: list[dict], greedy_rows: list[dict]) -> epath.Path:
    """Build the TFDS dataset (array_record) under `folder`; returns the prepared folder.
    It is built in a temporary sibling (on a bucket: locally, then uploaded) and moved there."""
    import shutil
    import tempfile

    folder = paths.absolute(folder)
    local_parent = None
    if not paths.is_remote(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        local_parent = folder.parent
    splits = {"samples": samples}
    if greedy_rows:
        splits["greedy"] = greedy_rows
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=local_parent))
    try:
        import tensorflow_datasets as tfds
        from absl import logging as absl_logging

        tfds.disable_progress_bar()  # our own bars already cover the slow parts
        level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.WARNING)
        try:
            builder = _builder_cls()(splits=splits, data_dir=str(tmp),
                                     file_format="array_record")
            with contextlib.redirect_stdout(sys.stderr):  # TFDS prints its notes to stdout
                builder.download_and_prepare()
        finally:
            absl_logging.set_verbosity(level)
        prepared = Path(builder.data_dir).relative_to(tmp)
        paths.replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / prepared


def _prepared_dir(folder: epath.Path) -> epath.Path:
    if (folder / "dataset_info.json").is_file():
        return folder
    found = sorted(folder.glob("*/*/dataset_info.json"))
    if not found:
        raise UserError(f"{folder}: no prepared TFDS dataset inside")
    return found[0].parent


def read_tfds_rows(folder: PathLike, split: str = "samples") -> list[dict]:
    """Rows of a critic-data TFDS dataset (a prepared folder or one above it), in row order.
    On a bucket the prepared folder is copied down first (array_record reads local files)."""
    prepared = _prepared_dir(paths.as_path(folder))
    if paths.is_remote(prepared):
        with paths.local_copy(prepared) as local:
            return read_tfds_rows(local, split)
    import tensorflow_datasets as tfds

    try:
        sources = tfds.builder_from_directory(str(prepared)).as_data_source()
    except Exception as e:  # TFDS raises its own types for damaged folders
        raise UserError(f"cannot open the critic dataset {prepared}: {e}") from e
    if split not in sources:
        raise UserError(f"{prepared} has no split {split!r}")
    src = sources[split]
    records = sorted((src[i] for i in range(len(src))), key=lambda r: int(r["index"]))
    rows = []
    for r in records:
        rows.append({"problem_id": _text(r["problem_id"]), "sample_index": int(r["sample_index"]),
                     "code": _text(r["code"]), "result": int(r["result"]),
                     "error_type": _text(r["error_type"]),
                     "output_ids": [int(x) for x in r["output_ids"]],
                     "prompt_ids": [int(x) for x in r["prompt_ids"]]})
    return rows


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else str(x)

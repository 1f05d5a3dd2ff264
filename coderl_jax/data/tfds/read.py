"""Build and read the problem datasets of `builders.py` (array_record, no TensorFlow)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from etils import epath

from coderl_jax import paths
from coderl_jax.data.records import Problem
from coderl_jax.errors import UserError
from coderl_jax.paths import PathLike

DATASETS = ("apps", "mbpp", "humaneval", "demo")


def prepare(dataset: str, data_dir: PathLike, manual_dir: PathLike | None = None
            ) -> epath.Path:
    """Build `dataset` under `data_dir`; returns the prepared folder (`data_dir/name/version`).
    A gs:// `data_dir` gets a dataset built in a local temporary folder, then uploaded."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if manual_dir is not None and not Path(manual_dir).is_dir():
        raise UserError(f"manual folder not found: {manual_dir}")
    import tensorflow_datasets as tfds

    from coderl_jax.data.tfds.builders import BUILDERS, FILE_FORMAT

    config = tfds.download.DownloadConfig(
        manual_dir=str(manual_dir) if manual_dir is not None else None)
    if paths.is_remote(data_dir):
        paths.check_bucket(data_dir)
        with tempfile.TemporaryDirectory(prefix="coderl-tfds-") as tmp:
            builder = BUILDERS[dataset](data_dir=tmp, file_format=FILE_FORMAT)
            builder.download_and_prepare(download_config=config)
            rel = os.path.relpath(builder.data_dir, tmp)
            target = paths.as_path(data_dir) / rel
            paths.replace_dir(builder.data_dir, target)
            return target
    builder = BUILDERS[dataset](data_dir=str(data_dir), file_format=FILE_FORMAT)
    builder.download_and_prepare(download_config=config)
    return epath.Path(builder.data_dir)


def data_sources(prepared: str | Path) -> dict:
    """`{split: ArrayRecordDataSource}` of a prepared folder (random access, no TensorFlow)."""
    prepared = Path(prepared)
    if not (prepared / "dataset_info.json").is_file():
        raise UserError(f"{prepared}: not a prepared dataset (no dataset_info.json)")
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(str(prepared))
    except Exception as e:  # TFDS raises its own types for damaged folders
        raise UserError(f"cannot open the prepared dataset {prepared}: {e}") from e
    return builder.as_data_source()


def split_sizes(prepared: PathLike) -> dict[str, int]:
    """`{split: number of records}` of a prepared folder (local or gs://)."""
    with paths.local_copy(prepared) as local:
        return {split: len(src) for split, src in sorted(data_sources(local).items())}


def load_prepared(prepared: PathLike, split: str | None = None) -> list[Problem]:
    """The Problems of a prepared folder (local or gs://), in source order (all splits when
    `split` is None)."""
    if paths.is_remote(prepared):
        with paths.local_copy(prepared) as local:
            return load_prepared(local, split)
    sources = data_sources(prepared)
    if split is not None and split not in sources:
        raise UserError(f"{prepared} has no split {split!r}; it has {', '.join(sorted(sources))}")
    names = [split] if split is not None else sorted(sources)
    problems = []
    for name in names:
        src = sources[name]
        rows = [src[i] for i in range(len(src))]
        rows.sort(key=lambda r: int(r["index"]))
        problems.extend(Problem.from_json(r["problem"]) for r in rows)
    return problems

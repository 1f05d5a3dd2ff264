"""Test set-up: 8 simulated CPU devices (set before jax is imported), the repository's small real
fixtures (tests/data, its README says what and from where), the packaged CodeT5 tokenizer, and
the optional full datasets in ../shared that only the tests named in NEEDS_SHARED use."""
import os
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from coderl_jax.tokenizer import PACKAGED as TOKENIZER_DIR

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"

# The only tests that read ../shared (a folder beside the checkout that a clone does not have):
# each needs a whole dataset, not a slice. They skip, saying why, where ../shared is absent.
NEEDS_SHARED = {
    "test_execution_datasets.py::test_mbpp_all_reference_solutions_pass":
        "all 974 MBPP reference programs and their challenge tests",
    "test_data_readers.py::test_mbpp_full_file_and_splits":
        "all 974 MBPP problems (split sizes, the 11 with challenge tests)",
    "test_data_readers.py::test_apps_full_test_sample":
        "the 148 APPS test problems and their 3,101 tests",
}


def data_path(*parts: str) -> Path:
    """A path under tests/data (the fixtures shipped with the repository)."""
    p = DATA.joinpath(*parts)
    assert p.exists(), f"{p} is missing from the repository's test fixtures"
    return p


@pytest.fixture
def shared(request) -> Path:
    """../shared, for the tests in NEEDS_SHARED only; they skip where it is absent."""
    name = f"{request.node.path.name}::{request.node.originalname}"
    assert name in NEEDS_SHARED, f"{name} uses ../shared but is not listed in NEEDS_SHARED"
    if not SHARED.is_dir():
        pytest.skip(f"needs {NEEDS_SHARED[name]} from {SHARED}, which is not beside this checkout")
    return SHARED


@pytest.fixture
def tokenizer_dir() -> Path:
    """The CodeT5 tokenizer shipped with the package."""
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """This checkout `pip install`ed (not editable) into a fresh venv (tests/package_install.py)."""
    from package_install import install_checkout
    return install_checkout(tmp_path_factory.mktemp("installed"))

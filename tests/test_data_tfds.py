"""TFDS builders: build array_record datasets without TensorFlow and read back equal records."""
import json
import subprocess
import sys

import pytest
from test_data_readers import CALL_IO, STDIN_IO, write_apps_problem

from coderl_jax.data.apps import load_apps
from coderl_jax.data.humaneval import load_humaneval
from coderl_jax.data.mbpp import load_mbpp
from coderl_jax.data.sources import load_problems
from coderl_jax.data.tfds.read import data_sources, load_prepared, prepare
from coderl_jax.errors import UserError

from conftest import REPO, data_path


def test_mbpp_build_and_read_back(tmp_path):
    manual = data_path("mbpp")
    folder = prepare("mbpp", tmp_path / "tfds", manual_dir=manual)
    assert folder == tmp_path / "tfds" / "mbpp" / "1.0.0"
    assert sorted(p.name for p in folder.glob("*.array_record*")) == [
        f"mbpp-{s}.array_record-00000-of-00001" for s in ("prompt", "test", "train", "validation")]
    path = manual / "mbpp.jsonl"
    for split in ("train", "test", "validation", "prompt"):
        assert load_prepared(folder, split) == load_mbpp(path, split)
    # the plain fields agree with the stored record
    src = data_sources(folder)["validation"]
    row = src[3]
    problem = json.loads(row["problem"])
    assert row["problem_id"].decode() == problem["problem_id"]
    assert row["source"] == b"mbpp" and row["format"] == b"assert"
    assert int(row["num_tests"]) == len(problem["tests"]["asserts"])
    assert int(row["num_solutions"]) == 1
    assert "tensorflow" not in sys.modules  # built and read without TensorFlow
    # a prepared folder is a SRC
    assert load_problems(str(folder), split="prompt") == load_mbpp(path, "prompt")


def test_apps_build_from_manual_dir_and_read_back(tmp_path):
    manual = tmp_path / "manual" / "APPS"
    write_apps_problem(manual / "train" / "0000", io=STDIN_IO, solutions=["print(3)"],
                       metadata={"difficulty": "interview"})
    write_apps_problem(manual / "train" / "0001", io=CALL_IO, starter="def add(a, b):\n",
                       question="Add ✓ unicode\ttabs.")
    write_apps_problem(manual / "test" / "0000", io=STDIN_IO)
    write_apps_problem(manual.parent / "APPS_test_example_tests" / "0000", question=None,
                       example={"inputs": ["1 2\n"], "outputs": ["3\n"]})
    folder = prepare("apps", tmp_path / "tfds", manual_dir=tmp_path / "manual")
    train = load_prepared(folder, "train")
    assert train == load_apps(manual / "train")
    [test] = load_prepared(folder, "test")
    assert test.split == "test" and test.example_tests.inputs == ("1 2\n",)
    assert len(load_prepared(folder)) == 3


def test_apps_build_from_real_data(tmp_path):
    """The real APPS problems (call-based tests with nested lists included) survive the trip."""
    train = data_path("apps", "train")
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "train").symlink_to(train, target_is_directory=True)
    folder = prepare("apps", tmp_path / "tfds", manual_dir=manual)
    assert load_prepared(folder, "train") == load_apps(train)


def test_humaneval_build_and_read_back(tmp_path):
    folder = prepare("humaneval", tmp_path / "tfds")
    assert load_prepared(folder, "test") == load_humaneval()


def test_demo_build_and_read_back(tmp_path):
    from coderl_jax.data import demo

    folder = prepare("demo", tmp_path / "tfds")
    assert load_prepared(folder, "train") == demo.load_demo(split="train")
    assert load_prepared(folder, "heldout") == demo.load_demo(split="heldout")


def test_prepare_and_read_errors(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        prepare("codeforces", tmp_path)
    with pytest.raises(UserError, match="manual folder not found"):
        prepare("mbpp", tmp_path, manual_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x").write_text("x")
    with pytest.raises(UserError, match="no MBPP .jsonl"):
        prepare("mbpp", tmp_path / "d", manual_dir=tmp_path / "empty")
    with pytest.raises(UserError, match="not a prepared dataset"):
        load_prepared(tmp_path)
    folder = prepare("humaneval", tmp_path / "tfds")
    with pytest.raises(UserError, match="no split 'train'"):
        load_prepared(folder, "train")


def test_cli_prepare(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "coderl_jax", "data", "prepare", "--dataset", "mbpp",
         "--manual-dir", str(data_path("mbpp")), "--data-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)  # stdout holds only the JSON line
    assert info["splits"] == {"prompt": 10, "test": 53, "train": 22, "validation": 10}
    assert info["path"] == str(tmp_path / "mbpp" / "1.0.0")
    out = subprocess.run(
        [sys.executable, "-m", "coderl_jax", "data", "prepare", "--dataset", "mbpp",
         "--manual-dir", str(tmp_path / "missing"), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip() == f"coderl: error: manual folder not found: {tmp_path / 'missing'}"

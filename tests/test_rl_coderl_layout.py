"""CodeRL's gen_solutions.json / baseline_solutions.json layout: write, read back, bad input."""
import json

import pytest

from coderl_jax.errors import UserError
from coderl_jax.rl import coderl_layout


def test_round_trip(tmp_path):
    rows = [
        {"problem_id": "0001", "code": "print(1)", "result": 1, "error_type": "passed unit tests"},
        {"problem_id": "0001", "code": "print(", "result": -2, "error_type": "syntaxerror"},
        {"problem_id": "0002", "code": "print(2)", "result": 0, "error_type": "failed unit tests"},
    ]
    greedy = [{"problem_id": "0001", "code": "x", "result": -1}]
    assert coderl_layout.write_layout(tmp_path, rows, greedy) == 2
    on_disk = json.loads((tmp_path / "0001" / "gen_solutions.json").read_text())
    assert [s["result"] for s in on_disk] == [True, -2]  # CodeRL's encoding
    assert json.loads((tmp_path / "0001" / "baseline_solutions.json").read_text()) == [
        {"code": "x", "result": -1}]
    back, greedy_back = coderl_layout.read_layout(tmp_path)
    assert [(r["problem_id"], r["code"], r["result"]) for r in back] == [
        (r["problem_id"], r["code"], r["result"]) for r in rows]
    assert greedy_back == {"0001": -1}


def test_reads_coderl_release_format(tmp_path):
    # the shape of CodeRL's released data/APPS/train/0001 files
    (tmp_path / "0001").mkdir()
    (tmp_path / "0001" / "gen_solutions.json").write_text(json.dumps([
        {"code": "a", "result": True, "error_type": "passed unit tests"},
        {"code": "b", "result": False, "error_type": "failed unit tests"}]))
    (tmp_path / "0001" / "baseline_solutions.json").write_text(
        json.dumps([{"code": "c", "result": -1}]))
    rows, greedy = coderl_layout.read_layout(tmp_path)
    assert [r["result"] for r in rows] == [1, 0] and greedy == {"0001": -1}


def test_bad_input(tmp_path):
    with pytest.raises(UserError, match="not found"):
        coderl_layout.read_layout(tmp_path / "missing")
    (tmp_path / "0003").mkdir()
    (tmp_path / "0003" / "gen_solutions.json").write_text("{not json")
    with pytest.raises(UserError, match="invalid JSON"):
        coderl_layout.read_layout(tmp_path)
    (tmp_path / "0003" / "gen_solutions.json").write_text(json.dumps([{"code": "a"}]))
    with pytest.raises(UserError, match="malformed"):
        coderl_layout.read_layout(tmp_path)

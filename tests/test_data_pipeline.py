"""grain pipeline: fixed-shape batches per stage, truncation and masks, seeded shuffle,
disjoint and complete per-host slices, and an iterator that resumes on the same batch."""
import json
import time

import numpy as np
import pytest

from coderl_jax.data.mbpp import load_mbpp
from coderl_jax.data.pipeline import (
    PipelineConfig,
    coderl_reindent,
    critic_examples,
    make_batches,
    make_dataset,
    make_iterator,
    reindent_solution,
    rl_examples,
    warmup_examples,
)
from coderl_jax.data.prompts import build_prompt
from coderl_jax.data.records import Problem, Tests as ProblemTests
from coderl_jax.errors import UserError
from coderl_jax.tokenizer import load_tokenizer

from conftest import TOKENIZER_DIR, data_path


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def mbpp():
    return load_mbpp(data_path("mbpp", "mbpp.jsonl"))


def _problem(pid, solutions=("print(1)",), question="Print one."):
    return Problem(pid, question, "stdin", ProblemTests(inputs=("",), outputs=("1\n",)),
                   solutions=tuple(solutions), source="apps")


def _all(ds, config=None):
    return list(make_iterator(ds, config))


def _real_indices(batches):
    return [int(i) for b in batches for i, v in zip(b["index"], b["valid"]) if v]


def test_warmup_batches_hold_prompt_and_solution(tok):
    problems = [_problem("a", ["x = 1\r\n\tprint(x)", "print(1)"]), _problem("b", []),
                _problem("c", ["print('✓')"], question="Q c")]
    cfg = PipelineConfig(batch_size=4, max_source_len=64, max_target_len=32, shuffle=False,
                         num_epochs=1)
    [batch] = _all(make_batches("warmup", tok, cfg, problems=problems, process_index=0,
                                process_count=1), cfg)
    assert set(batch) == {"encoder_ids", "encoder_mask", "targets", "target_mask", "index",
                          "valid"}
    for key, shape in [("encoder_ids", (4, 64)), ("encoder_mask", (4, 64)),
                       ("targets", (4, 32)), ("target_mask", (4, 32)), ("index", (4,)),
                       ("valid", (4,))]:
        assert batch[key].shape == shape and batch[key].dtype == np.int32, key
    assert batch["valid"].tolist() == [1, 1, 1, 0] and batch["index"].tolist() == [0, 1, 2, -1]
    wanted = [(problems[0], 0), (problems[0], 1), (problems[2], 0)]
    for row, (p, k) in enumerate(wanted):
        src = batch["encoder_ids"][row][batch["encoder_mask"][row] == 1]
        tgt = batch["targets"][row][batch["target_mask"][row] == 1]
        assert src.tolist() == tok.encode(build_prompt(p))  # <s> prompt </s>
        code = coderl_reindent(p.solutions[k])  # CodeRL reindents ground truth
        assert tgt.tolist() == tok.encode(code)  # <s> code </s>, as CodeRL
        assert tgt[0] == tok.bos_id and tgt[-1] == tok.eos_id
        assert tok.decode(tgt) == code
        # masks are a prefix of ones, padding is 0
        n = int(batch["target_mask"][row].sum())
        assert batch["target_mask"][row, :n].all() and not batch["targets"][row, n:].any()
    # the padding row: one EOS to attend to, no target
    assert batch["encoder_ids"][3].tolist()[:2] == [tok.eos_id, 0]
    assert batch["encoder_mask"][3].sum() == 1 and batch["target_mask"][3].sum() == 0
    assert tok.decode(batch["targets"][0]) == "x = 1\n\tprint(x)\n"
    # without <s> on targets, without reindenting
    cfg2 = PipelineConfig(batch_size=4, max_source_len=64, max_target_len=32, shuffle=False,
                          num_epochs=1, target_bos=False, reindent_solutions=False)
    [b2] = _all(make_batches("warmup", tok, cfg2, problems=problems, process_index=0,
                             process_count=1))
    n = int(b2["target_mask"][1].sum())
    assert b2["targets"][1, :n].tolist() == tok.encode("print(1)")[1:]
    n = int(b2["target_mask"][0].sum())
    assert tok.decode(b2["targets"][0, :n]) == "x = 1\r\n\tprint(x)"


@pytest.mark.parametrize("code,want", [
    ('def f(x):\r\n    if x:\r\n        return 1\r\n    s = """a\n    b"""\r\n    return 2',
     'def f(x):\n\tif x:\n\t\treturn 1\n\ts = """a\n\tb"""\n\treturn 2\n'),
    ("x\n  a\n   b\n    c\n", "x\n\ta\n\t b\n\t\tc\n"),  # the unit is the first indent (2)
    ("   \nx\n  y\n    \n", "   \nx\n\ty\n\t\t\n"),  # blank lines before it stay as they are
    ("if a:\n\tb\n\t\tc", "if a:\n\tb\n\t\tc\n"),
    # a tab first makes the unit that many tabs ("\t\t\t"), which no line here starts with
    ("if a:\n\t  b\n\t  \t  c\n", "if a:\n\t  b\n\t  \t  c\n"),
    ("print(1)", "print(1)\n"),
    ("", ""),
])
def test_coderl_reindent(code, want):
    assert coderl_reindent(code) == want


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MBPP's invalid escapes
def test_reindent_keeps_programs_compiling(mbpp):
    """CodeRL's reindent turns a few MBPP tab/space mixes into TabErrors (8 of all 974; the 4 of
    tests/data's slice); those stay verbatim."""
    broken = []
    for p in mbpp:
        code = p.solutions[0]
        try:
            compile(code, "x", "exec")
        except SyntaxError:
            continue
        try:
            compile(coderl_reindent(code), "x", "exec")
        except SyntaxError:
            broken.append(p.problem_id)
            assert reindent_solution(code) == code
            continue
        assert reindent_solution(code) == coderl_reindent(code)
    assert broken == ["175", "431", "516", "702"]
    for p in mbpp[:60]:  # reindented solutions still pass their tests
        namespace: dict = {}
        exec(reindent_solution(p.solutions[0]) + "\n" + p.tests.setup_code + "\n" +
             "\n".join(p.tests.asserts), namespace)


def test_truncation(tok):
    long_q = "word " * 400
    long_code = "\n".join(f"x{i} = {i}" for i in range(200))
    cfg = PipelineConfig(batch_size=1, max_source_len=50, max_target_len=40, shuffle=False,
                         num_epochs=1)
    [b] = _all(make_batches("warmup", tok, cfg, problems=[_problem("a", [long_code], long_q)],
                            process_index=0, process_count=1))
    assert b["encoder_mask"].sum() == 50
    assert b["encoder_ids"][0, -1] == tok.eos_id  # source keeps a final </s>
    assert (b["encoder_ids"][0, :49].tolist()
            == tok.encode(build_prompt(_problem("a", [], long_q)))[:49])
    assert b["target_mask"].sum() == 40  # target is cut plainly (CodeRL): no </s>
    assert b["targets"][0].tolist() == tok.encode(long_code)[:40]
    assert tok.eos_id not in b["targets"][0].tolist()


def test_critic_batches(tok):
    problems = {"a": _problem("a"), "b": _problem("b")}
    rows = [{"problem_id": "a", "code": "print(1)", "result": 1},
            {"problem_id": "b", "code": "print(", "result": -2},
            {"problem_id": "a", "output_ids": [1, 900, 901, 2], "result": True},
            {"problem_id": "b", "code": "1/0", "result": -1},
            {"problem_id": "a", "code": "print(2)", "result": False}]
    cfg = PipelineConfig(batch_size=8, max_source_len=64, max_target_len=16, shuffle=False,
                         num_epochs=1)
    [b] = _all(make_batches("critic", tok, cfg, problems=list(problems.values()), rows=rows,
                            process_index=0, process_count=1))
    assert b["labels"].dtype == np.int32 and b["labels"].shape == (8,)
    assert b["labels"][:5].tolist() == [3, 0, 3, 1, 2]
    assert b["targets"][2, :4].tolist() == [1, 900, 901, 2] and b["target_mask"][2].sum() == 4
    assert b["targets"][1][b["target_mask"][1] == 1].tolist() == tok.encode("print(")
    binary = critic_examples(problems, rows, num_classes=2)
    assert [e["label"] for e in binary] == [1, 0, 1, 0, 0]
    with pytest.raises(UserError, match="row 0: missing 'result'"):
        critic_examples(problems, [{"problem_id": "a", "code": "x"}])
    with pytest.raises(UserError, match="problem 'zz' is not among"):
        critic_examples(problems, [{"problem_id": "zz", "code": "x", "result": 1}])
    with pytest.raises(UserError, match="row 0: unknown outcome code 5"):
        critic_examples(problems, [{"problem_id": "a", "code": "x", "result": 5}])
    with pytest.raises(UserError, match="needs 'code'"):
        critic_examples(problems, [{"problem_id": "a", "result": 1}])


def test_rl_batches(tok):
    problems = {"a": _problem("a")}
    rows = [{"problem_id": "a", "output_ids": [1, 500, 501, 502, 2],
             "token_returns": [0.1, 0.2, 0.3, 0.4, 0.5]},
            {"problem_id": "a", "code": "print(1)", "return": -0.6},
            {"problem_id": "a", "output_ids": list(range(10, 30)), "token_returns": [1.0] * 20}]
    cfg = PipelineConfig(batch_size=3, max_source_len=64, max_target_len=8, shuffle=False,
                         num_epochs=1)
    [b] = _all(make_batches("rl", tok, cfg, problems=list(problems.values()), rows=rows,
                            process_index=0, process_count=1))
    assert b["token_returns"].dtype == np.float32 and b["token_returns"].shape == (3, 8)
    np.testing.assert_array_equal(b["token_returns"][0],
                                  np.float32([0.1, 0.2, 0.3, 0.4, 0.5, 0, 0, 0]))
    n = len(tok.encode("print(1)"))
    np.testing.assert_array_equal(b["token_returns"][1], np.float32([-0.6] * n + [0.0] * (8 - n)))
    np.testing.assert_array_equal(b["token_returns"][2], [1.0] * 8)  # cut with the program
    assert b["targets"][2].tolist() == list(range(10, 18))
    assert (b["token_returns"] != 0).sum() == b["target_mask"].sum()
    with pytest.raises(UserError, match="2 token returns for 3 output ids"):
        rl_examples(problems, [{"problem_id": "a", "output_ids": [1, 2, 3],
                                "token_returns": [0.0, 1.0]}])
    with pytest.raises(UserError, match="needs 'token_returns' or 'return'"):
        rl_examples(problems, [{"problem_id": "a", "code": "x"}])


def test_sampling_batches(tok, mbpp):
    cfg = PipelineConfig(batch_size=16, max_source_len=128, max_target_len=8, shuffle=False,
                         num_epochs=1)
    batches = _all(make_batches("sampling", tok, cfg, problems=mbpp[:20], process_index=0,
                                process_count=1))
    assert len(batches) == 2 and set(batches[0]) == {"encoder_ids", "encoder_mask", "index",
                                                     "valid"}
    assert _real_indices(batches) == list(range(20))
    row = batches[1]["encoder_ids"][3][batches[1]["encoder_mask"][3] == 1]
    assert tok.decode(row) == build_prompt(mbpp[19])


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_two_hosts_get_disjoint_complete_slices(tok, mbpp, drop_remainder):
    examples = warmup_examples(mbpp)
    assert len(examples) == 95
    cfg = PipelineConfig(batch_size=7, max_source_len=16, max_target_len=8, seed=3,
                         num_epochs=1, drop_remainder=drop_remainder)
    hosts = [_all(make_dataset(examples, tok, cfg, "warmup", process_index=i, process_count=2))
             for i in range(2)]
    assert len(hosts[0]) == len(hosts[1])  # same number of steps on every host
    seen = [_real_indices(h) for h in hosts]
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == len(set(seen[0]) | set(seen[1]))
    if drop_remainder:  # full batches only: 95 -> 84 = 6 batches of 7 per host x 2
        assert all(h["valid"].all() for host in hosts for h in host)
        assert len(set(seen[0]) | set(seen[1])) == 84
    else:
        assert set(seen[0]) | set(seen[1]) == set(range(95))


def test_hosts_disjoint_in_an_endless_pipeline(tok, mbpp):
    examples = warmup_examples(mbpp[:50])
    cfg = PipelineConfig(batch_size=5, max_source_len=16, max_target_len=8, seed=1)
    its = [make_iterator(make_dataset(examples, tok, cfg, "warmup", process_index=i,
                                      process_count=2), cfg) for i in range(2)]
    per_host = [[int(x) for _ in range(5) for x in next(it)["index"]] for it in its]
    assert sorted(per_host[0] + per_host[1]) == list(range(50))  # first epoch, split in two


def test_shuffle_is_seeded_and_reshuffled_each_epoch(tok, mbpp):
    examples = warmup_examples(mbpp[:40])

    def order(seed, epochs=2):
        cfg = PipelineConfig(batch_size=8, max_source_len=8, max_target_len=4, seed=seed,
                             num_epochs=epochs)
        return _real_indices(_all(make_dataset(examples, tok, cfg, "warmup", process_index=0,
                                               process_count=1)))

    a, b, c = order(0), order(0), order(1)
    assert a == b and a != c
    assert sorted(a[:40]) == sorted(a[40:]) == list(range(40))  # each epoch a permutation
    assert a[:40] != a[40:] and a[:40] != list(range(40))
    cfg = PipelineConfig(batch_size=8, max_source_len=8, max_target_len=4, shuffle=False,
                         num_epochs=1)
    assert _real_indices(_all(make_dataset(examples, tok, cfg, "warmup", process_index=0,
                                           process_count=1))) == list(range(40))


def test_iterator_resumes_on_the_same_batch(tok, mbpp):
    cfg = PipelineConfig(batch_size=6, max_source_len=48, max_target_len=32, seed=7)
    ds = make_batches("warmup", tok, cfg, problems=mbpp, process_index=1, process_count=2)
    it = make_iterator(ds, cfg)
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # plain JSON, checkpointable anywhere
    expected = [next(it) for _ in range(4)]
    resumed = make_iterator(make_batches("warmup", tok, cfg, problems=mbpp, process_index=1,
                                         process_count=2), cfg, state=state)
    for want in expected:
        got = next(resumed)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    fresh = make_iterator(ds, cfg)
    assert not np.array_equal(next(fresh)["index"], expected[0]["index"])


def test_mbpp_epoch_is_fast(tok, mbpp):
    cfg = PipelineConfig(batch_size=32, num_epochs=1)  # 600 / 512 tokens
    start = time.perf_counter()
    batches = _all(make_batches("warmup", tok, cfg, problems=mbpp, process_index=0,
                                process_count=1), cfg)
    seconds = time.perf_counter() - start
    print(f"MBPP warm-up epoch: {len(batches)} batches of 32 in {seconds:.2f} s")
    assert len(batches) == 3 and batches[0]["encoder_ids"].shape == (32, 600)  # 95 problems
    assert seconds < 10.0  # about a tenth of a second unloaded


def test_config_and_input_errors(tok):
    with pytest.raises(UserError):
        PipelineConfig(batch_size=0)
    with pytest.raises(UserError):
        PipelineConfig(num_epochs=0)
    cfg = PipelineConfig(batch_size=4, num_epochs=1)
    with pytest.raises(UserError, match="no warmup examples"):
        make_batches("warmup", tok, cfg, problems=[_problem("a", [])], process_index=0,
                     process_count=1)
    with pytest.raises(UserError, match="unknown stage"):
        make_batches("pretrain", tok, cfg, problems=[_problem("a")], process_index=0,
                     process_count=1)
    with pytest.raises(UserError, match="make no full batch"):
        make_batches("warmup", tok, PipelineConfig(batch_size=4, num_epochs=1,
                                                   drop_remainder=True),
                     problems=[_problem("a")], process_index=0, process_count=1)

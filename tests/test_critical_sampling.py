"""Critical sampling: bookkeeping, critic cuts vs a direct computation, refine and repair on the
demo problems with a tiny model, resumption, the CLI, repair-pair mining and the comparison."""
import functools
import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coderl_jax import cli
from coderl_jax.checkpoint_io import save_model
from coderl_jax.config import CriticConfig, model_preset
from coderl_jax.errors import UserError
from coderl_jax.inference import critical_sampling as cs, repair
from coderl_jax.models import t5
from coderl_jax.models.critic import T5Critic, init_critic_params
from coderl_jax.partitioning import make_mesh

N = 7
TOP_M = 2
MAX_NEW = 24
EOS = 2


# ---- pure bookkeeping ---------------------------------------------------------------------------

def test_allocate_is_exact_and_best_first():
    assert cs.allocate(200, 3) == [67, 67, 66]
    assert cs.allocate(7, 2) == [4, 3]
    assert cs.allocate(6, 3) == [2, 2, 2]
    assert cs.allocate(2, 5) == [1, 1, 0, 0, 0]
    rng = random.Random(0)
    for _ in range(200):
        total, parts = rng.randint(0, 500), rng.randint(1, 60)
        counts = cs.allocate(total, parts)
        assert sum(counts) == total and len(counts) == parts
        assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    with pytest.raises(ValueError):
        cs.allocate(3, 0)


def test_best_cut_positions():
    # argmax at position 2 -> seed keeps tokens 0..2
    assert cs.best_cut([0.1, 0.2, 0.9, 0.3, 0.5], [1, 5, 6, 7, EOS], EOS) == 3
    # the final EOS is never a cut point, even when the critic likes it best
    assert cs.best_cut([0.1, 0.2, 0.3, 0.4, 0.99], [1, 5, 6, 7, EOS], EOS) == 4
    # no EOS (cut-off program): every position counts
    assert cs.best_cut([0.1, 0.2, 0.3, 0.4, 0.99], [1, 5, 6, 7, 8], EOS) == 5
    # first maximum wins
    assert cs.best_cut([0.5, 0.7, 0.7, 0.1], [1, 5, 6, EOS], EOS) == 2
    # at most max_len tokens, and only positions the critic read
    assert cs.best_cut([0.1, 0.2, 0.3, 0.9], [1, 5, 6, 7, 8], EOS, max_len=2) == 2
    assert cs.best_cut([0.1, 0.9], [1, 5, 6, 7, 8], EOS) == 2
    assert cs.best_cut([], [EOS], EOS) == 0


def _row(i, ids, example_result, score, token_pass=None, code=None):
    r = {"sample_index": i, "output_ids": ids, "code": code or f"code{tuple(ids)}",
         "example_result": example_result, "critic_score": score}
    if token_pass is not None:
        r["_token_pass"] = np.asarray(token_pass)
    return r


def test_plan_refine_bookkeeping():
    prev = [
        _row(10, [1, 5, 6, EOS], 0, 0.9),  # failing: ignored when some pass
        _row(11, [1, 7, 8, 9, EOS], 1, 0.2, [0.1, 0.6, 0.3, 0.2, 0.1]),  # seed [1, 7], 0.6
        _row(12, [1, 7, 8, 9, EOS], 1, 0.2, [0.1, 0.6, 0.3, 0.2, 0.1]),  # duplicate ids
        _row(13, [1, 4, 4, EOS], 1, 0.5, [0.2, 0.1, 0.8, 0.9]),  # seed [1, 4, 4], 0.8
        _row(14, [1, 3, EOS], 1, 0.1, [0.6, 0.2, 0.1]),  # seed [1], 0.6: ties 11, later
        _row(15, [1, 2, 2, 2, EOS], -1, 0.99),
    ]
    plan = cs.plan_round(prev, 200, TOP_M, EOS)
    assert plan.origin == "refine"
    assert [s["parent"] for s in plan.sources] == [13, 11, 14]
    assert [s["seed"] for s in plan.sources] == [[1, 4, 4], [1, 7], [1]]
    assert [s["count"] for s in plan.sources] == [67, 67, 66]  # 200 / |passing| = 200 / 3
    assert sum(s["count"] for s in plan.sources) == 200
    # more distinct passing programs than samples: the best N seeds get one each
    plan = cs.plan_round(prev, 2, TOP_M, EOS)
    assert [(s["parent"], s["count"]) for s in plan.sources] == [(13, 1), (11, 1)]


def test_plan_repair_bookkeeping():
    prev = [
        _row(0, [1, 5, EOS], 0, 0.30, code="a"),
        _row(1, [1, 6, EOS], -1, 0.70, code="b"),
        _row(2, [1, 7, EOS], -2, 0.70, code="b\n"),  # same code as 1 (trailing blanks)
        _row(3, [1, 8, EOS], 0, 0.50, code="c"),
        _row(4, [1, 9, EOS], -2, 0.10, code="d"),
    ]
    plan = cs.plan_round(prev, 7, 2, EOS)
    assert plan.origin == "repair"
    assert [(s["parent"], s["count"]) for s in plan.sources] == [(1, 4), (3, 3)]
    plan = cs.plan_round(prev, 10, 3, EOS)
    assert [(s["parent"], s["count"]) for s in plan.sources] == [(1, 4), (3, 3), (0, 3)]
    plan = cs.plan_round(prev, 5, 10, EOS)  # M larger than the distinct failures
    assert [s["parent"] for s in plan.sources] == [1, 3, 0, 4]
    assert sum(s["count"] for s in plan.sources) == 5
    plan = cs.plan_round(prev, 5, 2, EOS, has_example_tests=False)
    assert plan.origin == "sample" and plan.sources[0]["count"] == 5


def test_config_rejects_bad_values():
    with pytest.raises(UserError, match="num_samples"):
        cs.CriticalSamplingConfig(num_samples=0)
    with pytest.raises(UserError, match="top_p"):
        cs.CriticalSamplingConfig(top_p=0.0)
    with pytest.raises(UserError, match="rounds"):
        cs.CriticalSamplingConfig(rounds=-1)


# ---- models and data ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from coderl_jax.tokenizer import load_tokenizer

    from conftest import TOKENIZER_DIR

    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def models():
    config = model_preset("tiny", dropout_rate=0.0)
    head = CriticConfig(num_classes=2)
    return cs.Models(config, t5.init_params(config, jax.random.PRNGKey(0)), config, head,
                     init_critic_params(config, head, jax.random.PRNGKey(1)))


@pytest.fixture(scope="module")
def demo_items():
    from coderl_jax.data.demo import build_demo

    return [it for it in build_demo() if it.problem.split == "heldout"][:3]


def _given_programs(items):
    """Round-0 programs: problem 0 has three distinct passing ones, problem 1 only failures."""
    a, b = items[0], items[1]
    sol = a.problem.solutions[0]
    progs_a = [a.near_misses[0], sol, "# first\n" + sol, sol, sol + "# last\n",
               a.near_misses[-1], "def broken(:\n"]
    progs_b = [b.near_misses[0], b.near_misses[1], "def broken(:\n",
               "print(undefined_zebra)\n", b.near_misses[0], "n = 1\n", b.near_misses[-1]]
    return {a.problem.problem_id: progs_a, b.problem.problem_id: progs_b}


def _given_rows(items, tokenizer):
    return {pid: [{"problem_id": pid, "sample_index": i, "output_ids": tokenizer.encode(code),
                   "code": code} for i, code in enumerate(progs)]
            for pid, progs in _given_programs(items).items()}


@pytest.fixture(scope="module")
def pool():
    from coderl_jax.execution.pool import ExecutionPool

    with ExecutionPool(workers=2, timeout=4.0) as p:
        yield p


def _cfg(**kw):
    return cs.CriticalSamplingConfig(**{**dict(num_samples=N, rounds=1, top_m=TOP_M,
                                               max_new_tokens=MAX_NEW, max_target_len=64,
                                               batch_size=8, temperature=1.0, top_p=1.0,
                                               block_size=2), **kw})


@pytest.fixture(scope="module")
def result(models, tokenizer, demo_items, pool):
    problems = [it.problem for it in demo_items]
    chunks = []
    rows = cs.CriticalSampler(models, tokenizer, _cfg(), pool=pool, mesh=make_mesh()).run(
        problems, initial_rows=_given_rows(demo_items, tokenizer), on_rows=chunks.append)
    return problems, rows, chunks


def _direct_critic(models, prompt_ids, ids):
    """P(passed) per position and overall, one unpadded row through T5Critic (no padding, no
    buckets, no mesh: the reference the scorer's batched, padded computation must match)."""
    token_pass, pass_prob = _direct_fn(models.critic_config, models.critic_head)(
        models.critic_params, jnp.asarray([prompt_ids], jnp.int32), jnp.asarray([ids], jnp.int32))
    return np.asarray(token_pass), float(pass_prob)


@functools.lru_cache(maxsize=None)
def _direct_fn(config, head):
    def fn(params, enc, tgt):  # [1, s], [1, t] -> [t], []
        cls_logits, tok_logits = T5Critic(config, head).apply(
            {"params": params}, enc, jnp.ones_like(enc), t5.shift_right(tgt, 0), jnp.ones_like(tgt))
        return jax.nn.softmax(tok_logits[0], -1)[:, -1], jax.nn.softmax(cls_logits[0], -1)[-1]

    return jax.jit(fn)


def test_critic_scorer_matches_direct(models, tokenizer, demo_items):
    from coderl_jax.data.prompts import build_prompt

    scorer = cs.ProgramScorer(models.critic_config, models.critic_head, models.critic_params,
                             batch_size=4, max_target_len=64)
    prompts = [tokenizer.encode(build_prompt(it.problem)) for it in demo_items]
    programs = [tokenizer.encode(c) for c in ("x = 1\n", demo_items[0].problem.solutions[0],
                                              "print(2)\n# comment\n")]
    scores = scorer.score(prompts, programs)
    for p, ids, s in zip(prompts, programs, scores):
        token_pass, pass_prob = _direct_critic(models, p, ids)
        assert s.token_probs.shape == (len(ids), 2)
        np.testing.assert_allclose(s.token_pass, token_pass, atol=1e-5, rtol=0)
        assert s.pass_prob == pytest.approx(pass_prob, abs=1e-5)


def test_rows_and_rounds(result):
    problems, rows, chunks = result
    assert len(rows) == len(problems) * 2 * N
    for p in problems:
        mine = [r for r in rows if r["problem_id"] == p.problem_id]
        assert [r["sample_index"] for r in mine] == list(range(2 * N))
        assert [r["round"] for r in mine] == [0] * N + [1] * N
        for r in mine:
            assert r["origin"] in cs.ORIGINS
            assert r["result"] in (-2, -1, 0, 1) and r["example_result"] in (-2, -1, 0, 1)
            assert 0.0 <= r["critic_score"] <= 1.0
            assert r["difficulty"] == p.difficulty
            assert not any(k.startswith("_") for k in r)
    # rows were handed out round by round, per block
    assert [len(c) for c in chunks] == [2 * N, 2 * N, N, N]
    by = {r["problem_id"]: r for r in rows if r["round"] == 1}
    assert by[problems[0].problem_id]["origin"] == "refine"
    assert by[problems[1].problem_id]["origin"] == "repair"


def test_refine_seeds_cut_where_the_critic_peaks(result, models):
    problems, rows, _ = result
    pid = problems[0].problem_id
    mine = [r for r in rows if r["problem_id"] == pid]
    round0 = {r["sample_index"]: r for r in mine if r["round"] == 0}
    refined = [r for r in mine if r["round"] == 1]
    assert all(r["origin"] == "refine" for r in refined)
    # the passing programs: the reference solution (twice) and two variants
    passing = [r for r in round0.values() if r["example_result"] == 1]
    distinct = {tuple(r["output_ids"]): r["sample_index"] for r in reversed(passing)}
    assert len(passing) == 4 and len(distinct) == 3
    expected = {}
    for ids, index in distinct.items():
        token_pass, _ = _direct_critic(models, round0[index]["prompt_ids"], list(ids))
        cut = int(np.argmax(token_pass[: len(ids) - 1])) + 1  # final EOS excluded
        expected[index] = (cut, float(token_pass[cut - 1]))
    counts = {}
    for r in refined:
        parent = round0[r["parent"]]
        cut, _ = expected[r["parent"]]
        assert r["seed_len"] == cut
        assert r["output_ids"][:cut] == parent["output_ids"][:cut]  # the seed is kept
        assert r["prompt_ids"] == parent["prompt_ids"]
        counts[r["parent"]] = counts.get(r["parent"], 0) + 1
    order = sorted(expected, key=lambda i: (-expected[i][1], i))
    assert [counts.get(i, 0) for i in order] == cs.allocate(N, 3) == [3, 2, 2]
    # samples of one seed are consecutive, best seed first
    assert [r["parent"] for r in refined] == [i for i, c in zip(order, [3, 2, 2])
                                              for _ in range(c)]


def test_repair_prompts_hold_program_and_error(result, tokenizer):
    problems, rows, _ = result
    pid = problems[1].problem_id
    mine = [r for r in rows if r["problem_id"] == pid]
    round0 = {r["sample_index"]: r for r in mine if r["round"] == 0}
    assert all(r["example_result"] != 1 for r in round0.values())
    repaired = [r for r in mine if r["round"] == 1]
    # top-M distinct failing programs by critic score, N split over them
    distinct = {}
    for r in sorted(round0.values(), key=lambda r: r["sample_index"]):
        distinct.setdefault(r["code"].strip(), r)
    top = sorted(distinct.values(), key=lambda r: -r["critic_score"])[:TOP_M]
    parents = [r["parent"] for r in repaired]
    assert parents == [top[0]["sample_index"]] * 4 + [top[1]["sample_index"]] * 3
    for r in repaired:
        assert r["origin"] == "repair" and r["seed_len"] == 0
        parent = round0[r["parent"]]
        text = tokenizer.decode(r["prompt_ids"])
        assert parent["code"].rstrip("\n") in text
        assert "-----Previous Answer-----" in text and "ANSWER:" in text
        if parent["example_error_message"]:
            assert parent["example_error_message"] in text
        assert r["prompt_ids"] == tokenizer.encode(repair.repair_prompt(
            problems[1], repair.Failure.from_row(parent, "example_")))
    # the error message really reaches the prompt for a program that has one
    named = [r for r in round0.values() if "undefined_zebra" in r["code"]][0]
    assert "undefined_zebra" in named["example_error_message"]


def test_sampled_round_zero_and_repair(result):
    problems, rows, _ = result
    mine = [r for r in rows if r["problem_id"] == problems[2].problem_id]
    assert all(r["origin"] == "sample" and r["parent"] is None for r in mine[:N])
    # a random tiny model passes nothing: round 1 repairs
    assert {r["origin"] for r in mine[N:]} == {"repair"}


def test_resume_continues_to_the_same_rows(result, models, tokenizer, demo_items, pool):
    problems, rows, _ = result
    # an interrupted run: round 0 of every problem, plus half of a round 1
    done = [r for r in rows if r["round"] == 0] + \
        [r for r in rows if r["round"] == 1 and r["problem_id"] == problems[0].problem_id][:3]
    chunks = []
    again = cs.CriticalSampler(models, tokenizer, _cfg(), pool=pool, mesh=make_mesh()).run(
        problems, initial_rows=_given_rows(demo_items, tokenizer), done_rows=done,
        on_rows=chunks.append)
    assert sum(len(c) for c in chunks) == len(problems) * N  # only round 1 was redone
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(again) == strip(rows)


def test_summarize_rows_matches_evaluation(result):
    from coderl_jax.evaluation import pass_at_k

    problems, rows, _ = result
    s = cs.summarize_rows(rows, ks=[1, 2 * N])
    per = [sum(r["result"] == 1 for r in rows if r["problem_id"] == p.problem_id)
           for p in problems]
    assert s["pass@1"] == pytest.approx(np.mean([pass_at_k(2 * N, c, 1) for c in per]))
    assert s["num_problems"] == 3 and "1@1" in s and "5@14" in s


# ---- CLI ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, models):
    d = tmp_path_factory.mktemp("cs_ckpt")
    save_model(d / "actor", models.actor_params, models.actor_config)
    save_model(d / "critic", models.critic_params, models.critic_config, models.critic_head)
    return d


def _cli(checkpoints, out, *extra):
    from conftest import TOKENIZER_DIR

    return cli.main(["critical-sampling", "--checkpoint", str(checkpoints / "actor"),
                     "--critic", str(checkpoints / "critic"),
                     "--tokenizer", str(TOKENIZER_DIR),
                     "--problems", "demo", "--split", "heldout", "--limit", "2",
                     "--out", str(out), f"--config.num_samples={N}", "--config.rounds=1",
                     f"--config.top_m={TOP_M}", f"--config.max_new_tokens={MAX_NEW}",
                     "--config.max_target_len=64", "--config.temperature=1.0",
                     "--config.top_p=1.0", "--config.seed=0", "--config.workers=2", *extra])


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_end_to_end_and_resume(checkpoints, tmp_path, tokenizer, demo_items, result,
                                   capsys):
    samples = tmp_path / "samples.jsonl"
    given = _given_rows(demo_items[:2], tokenizer)
    samples.write_text("".join(json.dumps(r) + "\n" for rs in given.values() for r in rs))
    out = tmp_path / "cs.jsonl"
    assert _cli(checkpoints, out, "--samples", str(samples)) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = _read(out)
    assert len(rows) == 2 * 2 * N
    assert not (tmp_path / "cs.jsonl.partial").exists()
    # the same rows as the library run on those two problems
    _, lib_rows, _ = result
    pids = {it.problem.problem_id for it in demo_items[:2]}
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(rows) == strip([r for r in lib_rows if r["problem_id"] in pids])
    settings = json.loads((tmp_path / "cs.settings.json").read_text())
    assert settings["config"]["num_samples"] == N and settings["config"]["top_m"] == TOP_M
    assert settings["paths"]["samples"] == str(samples)
    assert settings["origins"] == {"sample": 2 * N, "refine": N, "repair": N}
    # coderl evaluate reads the rows directly and agrees with the printed summary
    assert cli.main(["evaluate", "--results", str(out), "--json", "--k", "1,5,14"]) == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("pass@1", "pass@5", "pass@14", "1@5", "5@14"):
        assert ev[key] == pytest.approx(printed[key])
    assert ev["filter"]["rank_by"] == "critic"

    # resume: an interrupted run left round 0 and part of round 1 in OUT.partial
    out2 = tmp_path / "cs2.jsonl"
    part = tmp_path / "cs2.jsonl.partial"
    assert _cli(checkpoints, out2, "--samples", str(samples)) == 0
    keep = [r for r in rows if r["round"] == 0] + [r for r in rows if r["round"] == 1][:2]
    out2.unlink()
    part.write_text("".join(json.dumps(r) + "\n" for r in keep) + '{"problem_id": "tr')
    record = {k: v for k, v in json.loads((tmp_path / "cs2.settings.json").read_text()).items()
              if k in ("command", "paths", "limit", "num_problems", "config", "jax")}
    part_settings = tmp_path / "cs2.jsonl.partial.settings.json"
    part_settings.write_text(json.dumps(record))
    capsys.readouterr()
    assert _cli(checkpoints, out2, "--samples", str(samples), "--resume") == 0
    assert "resuming: 14 programs" in capsys.readouterr().err
    assert strip(_read(out2)) == strip(rows)
    # resuming with other settings is refused
    part.write_text("".join(json.dumps(r) + "\n" for r in keep))
    part_settings.write_text(json.dumps(record))
    assert _cli(checkpoints, out2, "--samples", str(samples), "--resume", "--config.top_m=3") == 2
    assert "other settings (config)" in capsys.readouterr().err


def test_cli_bad_input_is_one_line(checkpoints, tmp_path, capsys):
    cases = [
        (["--critic", str(checkpoints / "actor")], "needs a critic"),
        (["--critic", str(tmp_path / "nope")], "critic not found"),
        (["--config.num_samples=0"], "num_samples must be >= 1"),
        (["--config.top_p=1.5"], "top_p must be in"),
        (["--config.num_sample=3"], "unknown config key 'num_sample'"),
        (["--samples", str(tmp_path / "missing.jsonl")], "samples not found"),
    ]
    for extra, message in cases:
        assert _cli(checkpoints, tmp_path / "bad.jsonl", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert cli.main(["critical-sampling", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err


def test_cli_settings_come_from_the_config_file_then_overrides(tmp_path, capsys):
    from coderl_jax.commands import critical_sampling as cmd

    cfg = tmp_path / "cs_cfg.py"
    cfg.write_text("import ml_collections\n\ndef get_config():\n"
                   "    return ml_collections.ConfigDict(dict(num_samples=9, rounds=3, "
                   "top_m=4))\n")
    args = cli.parse_args(["critical-sampling", "--config", str(cfg), "--config.rounds=2",
                           "--config.top_k", "7", "--checkpoint", "A", "--out", "o.jsonl"])
    paths, c = cmd.resolve(args)
    assert (c.num_samples, c.rounds, c.top_m, c.top_k) == (9, 2, 4, 7)  # the override wins
    assert c.temperature == cs.CriticalSamplingConfig().temperature  # the default stays
    assert paths["checkpoint"] == "A" and paths["critic"] is None
    # without a file the overrides apply to the defaults
    args = cli.parse_args(["critical-sampling", "--config.num_samples=3", "--out", "o.jsonl"])
    assert cmd.resolve(args)[1].num_samples == 3
    bad = tmp_path / "bad_cfg.py"
    bad.write_text("import ml_collections\n\ndef get_config():\n"
                   "    return ml_collections.ConfigDict(dict(num_sample=9))\n")
    args = cli.parse_args(["critical-sampling", "--config", str(bad)])
    with pytest.raises(UserError, match="unknown key"):
        cmd.resolve(args)
    # the old per-setting flags are gone, and commands without a config take no overrides
    for argv in (["critical-sampling", "--num-samples=3"],
                 ["run-tests", "--problems", "demo", "--programs", "p", "--out", "o",
                  "--config.workers=2"]):
        with pytest.raises(SystemExit):
            cli.parse_args(argv)
        assert "unrecognized arguments" in capsys.readouterr().err


# ---- repair data ------------------------------------------------------------------------------

def _executed_rows(items, pool):
    problems = {it.problem.problem_id: it.problem for it in items}
    rows = [{"problem_id": pid, "code": code}
            for pid, progs in _given_programs(items).items() for code in progs]
    for row, res in zip(rows, pool.run(problems, rows)):
        row.update(res)
    return problems, rows


def test_mine_repair_pairs_and_dataset_round_trip(demo_items, pool, tmp_path):
    from coderl_jax.data.apps import load_apps
    from coderl_jax.data.prompts import build_prompt

    problems, rows = _executed_rows(demo_items[:2], pool)
    pairs = repair.mine_repair_pairs(problems, rows)
    a, b = demo_items[0].problem, demo_items[1].problem
    # problem a: each distinct failing program paired with its closest passing program
    pa = [p for p in pairs if p.problem_id == a.problem_id]
    assert {p.failure.code for p in pa} == {demo_items[0].near_misses[0],
                                           demo_items[0].near_misses[-1], "def broken(:\n"}
    near = [p for p in pa if p.failure.code == demo_items[0].near_misses[0]][0]
    assert near.fixed_code == a.solutions[0] and near.failure.result == 0
    # problem b has no passing sample: its reference solution is the fix
    pb = [p for p in pairs if p.problem_id == b.problem_id]
    assert pb and all(p.fixed_code == b.solutions[0] and p.fix_origin == "solution" for p in pb)
    assert all(p.problem_id == a.problem_id for p in
               repair.mine_repair_pairs(problems, rows, use_solutions=False))
    info = repair.write_repair_dataset(pairs, problems, tmp_path / "repair")
    assert info == {"written": len(pairs), "skipped": 0, "path": str(tmp_path / "repair")}
    loaded = load_apps(tmp_path / "repair")
    assert len(loaded) == len(pairs)
    for pair, prob in zip(pairs, loaded):
        # the warm-up prompt of the written problem is exactly the repair prompt
        assert build_prompt(prob) == repair.repair_prompt(problems[pair.problem_id],
                                                          pair.failure)
        assert prob.solutions == (pair.fixed_code,)
        assert prob.format == problems[pair.problem_id].format


def test_repair_prompt_format():
    from coderl_jax.data.records import Problem, Tests

    p = Problem("7", "Add two numbers.", "stdin", Tests(("1 2\n",), ("3\n",)))
    f = repair.Failure("a, b = input().split()\nprint(a + b)\n", 0, "failed unit tests",
                       "wrong answer on test 0", None)
    text = repair.repair_prompt(p, f)
    assert text == ("\nQUESTION:\nAdd two numbers.\n\n-----Previous Answer-----\n"
                    "a, b = input().split()\nprint(a + b)\n\n-----Outcome-----\n"
                    "failed tests (failed unit tests)\nwrong answer on test 0\n\n-----Task-----\n"
                    "Fix the previous answer so that it passes the tests.\n\n\n"
                    "\nUse Standard Input format\n\nANSWER:\n")
    g = repair.Failure("x" * 50, -1, "nameerror", "NameError: " + "y" * 100, 3)
    text = repair.repair_prompt(p, g, repair.RepairFormat(max_program_chars=10,
                                                           max_error_chars=20))
    assert "x" * 10 + "\n# ..." in text and "x" * 11 not in text
    assert "runtime error (nameerror)\nNameError: yyyyyyyyy (line 3)" in text


def test_cli_mine_repair(demo_items, pool, tmp_path, capsys):
    _, rows = _executed_rows(demo_items[:2], pool)
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "repair_data"
    assert cli.main(["critical-sampling", "mine-repair", "--problems", "demo", "--split",
                     "heldout", "--results", str(results), "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pairs"] == len(list(out.iterdir())) - 1 and info["problems"] == 2
    assert cli.main(["critical-sampling", "mine-repair", "--problems", "demo", "--results",
                     str(results), "--out", str(out), "--no-samples", "--no-solutions"]) == 2
    assert "nothing to pair" in capsys.readouterr().err


# ---- the comparison -----------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_plain_vs_critical_same_budget(models, tokenizer, demo_items):
    problems = [it.problem for it in demo_items[:2]]
    cfg = _cfg(num_samples=3, rounds=1, workers=2)
    out = cs.compare_plain_vs_critical(models, tokenizer, problems, cfg)
    assert out["budget"] == 6 and out["num_problems"] == 2
    for name in ("plain", "critical"):
        s = out[name]
        assert s["num_samples"] == 2 * 6 and s["num_problems"] == 2
        assert set(s["k"]) == {1, 5, 6} and 0.0 <= s["pass@1"] <= 1.0 and "1@5" in s
    assert sum(out["origins"].values()) == 12 and out["origins"]["sample"] == 6


@pytest.mark.slow
def test_cli_compare(checkpoints, tmp_path, capsys):
    from conftest import TOKENIZER_DIR

    out = tmp_path / "compare.json"
    assert cli.main(["critical-sampling", "--compare", "--checkpoint", str(checkpoints / "actor"),
                     "--critic", str(checkpoints / "critic"),
                     "--tokenizer", str(TOKENIZER_DIR), "--problems", "demo",
                     "--split", "heldout", "--limit", "2", "--out", str(out),
                     "--config.num_samples=2", "--config.rounds=1",
                     "--config.max_new_tokens=8", "--config.max_target_len=64",
                     "--config.workers=2"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads(out.read_text())
    assert record["budget"] == printed["budget"] == 4 and record["num_problems"] == 2
    assert record["config"]["num_samples"] == 2 and record["command"].endswith("--compare")
    plain = _read(tmp_path / "compare.plain.jsonl")
    critical = _read(tmp_path / "compare.critical.jsonl")
    assert len(plain) == len(critical) == 2 * 4
    assert {r["origin"] for r in plain} == {"sample"}
    # the printed numbers are those of the rows written
    assert printed["plain"]["pass@1"] == pytest.approx(
        cs.summarize_rows(plain, [1, 4])["pass@1"])
    assert printed["critical"]["pass@4"] == pytest.approx(
        cs.summarize_rows(critical, [1, 4])["pass@4"])

"""Token returns of crafted program rows vs a hand computation, through the offline RL source,
under both rl.mode switches (and the batch each mode really feeds the model)."""
import dataclasses
import json

import numpy as np
import pytest

from coderl_jax.config import MODEL_SIZES
from coderl_jax.errors import UserError
from coderl_jax.rl.returns import token_returns_for_rows, with_token_returns

P1, P2 = "demo-train-int_arith-00", "demo-train-int_arith-01"

# three tokens each (the last is EOS); critic class probabilities per token, 4 classes
PROBS_A = [[0.1, 0.1, 0.3, 0.5], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]]
PROBS_B = [[0.2, 0.3, 0.4, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.8, 0.1]]
PROBS_C = [[0.7, 0.1, 0.1, 0.1], [0.9, 0.05, 0.05, 0.0], [0.4, 0.2, 0.2, 0.2]]
PROBS_D = [[0.1, 0.5, 0.2, 0.2], [0.3, 0.3, 0.3, 0.1], [0.0, 1.0, 0.0, 0.0]]
ROWS = [
    {"problem_id": P1, "sample_index": 0, "output_ids": [1, 501, 2], "result": 1,
     "token_probs": PROBS_A},
    {"problem_id": P1, "sample_index": 1, "output_ids": [1, 502, 2], "result": 0,
     "token_probs": PROBS_B},
    {"problem_id": P1, "sample_index": 2, "output_ids": [1, 503, 2], "result": -2,
     "token_probs": PROBS_C},
    {"problem_id": P2, "sample_index": 0, "output_ids": [1, 504, 2], "result": -1,
     "token_probs": PROBS_D},
]
GREEDY = {P1: -1, P2: True}  # CodeRL's JSON `true` = passed

# by hand: rewards +1 / -0.3 / -1 / -0.6, greedy rewards -0.6 (P1) and +1 (P2);
# the probability of each sample's true class (passed=3, failed=2, compile=0, runtime=1)
HAND_GREEDY = [
    [1.6 * 0.5, 1.6 * 0.25, 1.6 * 1.0],
    [0.3 * 0.4, 0.3 * 0.2, 0.3 * 0.8],
    [-0.4 * 0.7, -0.4 * 0.9, -0.4 * 0.4],
    [-1.6 * 0.5, -1.6 * 0.3, -1.6 * 1.0],
]
PROBS_TRUE = [0.5, 0.4, 0.7, 0.5]  # each row's first-token probability of its true class
# mean of the other samples of the same problem; a lone sample keeps its raw reward
HAND_MEAN_OTHERS = [
    [1.65 * 0.5, 1.65 * 0.25, 1.65 * 1.0],
    [-0.3 * 0.4, -0.3 * 0.2, -0.3 * 0.8],
    [-1.35 * 0.7, -1.35 * 0.9, -1.35 * 0.4],
    [-0.6 * 0.5, -0.6 * 0.3, -0.6 * 1.0],
]


def test_token_returns_by_hand():
    got = token_returns_for_rows(ROWS, "greedy", GREEDY)
    for g, want in zip(got, HAND_GREEDY):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)
    got = token_returns_for_rows(ROWS, "mean_others")
    for g, want in zip(got, HAND_MEAN_OTHERS):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)
    # without critic scores every token carries the sequence return
    got = token_returns_for_rows(ROWS, "greedy", GREEDY, use_critic=False)
    np.testing.assert_allclose(got[0], [1.6] * 3, rtol=1e-6)
    with pytest.raises(UserError, match="greedy"):
        token_returns_for_rows(ROWS, "greedy", None)
    # a binary critic scores the "passed" class for passed programs, "not passed" otherwise
    binary = [dict(ROWS[0], token_probs=[[0.2, 0.8]] * 3),
              dict(ROWS[1], token_probs=[[0.6, 0.4]] * 3)]
    got = token_returns_for_rows(binary, "none")
    np.testing.assert_allclose(got[0], [0.8] * 3, rtol=1e-6)
    np.testing.assert_allclose(got[1], [-0.3 * 0.6] * 3, rtol=1e-6)
    code_only = with_token_returns([{"problem_id": P1, "code": "print(1)", "result": 0}], "none")
    assert code_only[0]["return"] == pytest.approx(-0.3) and "token_returns" not in code_only[0]


def _offline_batch(tmp_path, tokenizer_dir, mode, baseline="greedy"):
    from coderl_jax.tokenizer import load_tokenizer
    from coderl_jax.train.run import base_config, run_config
    from coderl_jax.train.sources import make_source

    tmp_path.mkdir(parents=True, exist_ok=True)
    programs = tmp_path / "programs.jsonl"
    programs.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "greedy.jsonl").write_text("".join(
        json.dumps({"problem_id": p, "sample_index": 0, "code": "", "result": r}) + "\n"
        for p, r in GREEDY.items()))
    cfg = base_config("tiny", "offline_rl")
    cfg.train.batch_size = 4
    cfg.data.problems = "demo"
    cfg.data.split = "train"
    cfg.data.programs = str(programs)
    cfg.data.tokenizer = str(tokenizer_dir)
    cfg.data.max_source_len = 256
    cfg.data.max_target_len = 8
    cfg.rl.mode = mode
    cfg.rl.baseline = baseline
    run = run_config(cfg)
    source = make_source("offline_rl", run.data, run.train, load_tokenizer(str(tokenizer_dir)),
                         run=run)
    return run, next(source)


def test_offline_batch_returns_and_sources_per_mode(tmp_path, tokenizer_dir):
    from coderl_jax.data.pipeline import coderl_reindent
    from coderl_jax.data.prompts import build_prompt
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.tokenizer import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    batches = {}
    for mode in ("fixed", "paper_faithful"):
        run, batch = _offline_batch(tmp_path / mode, tokenizer_dir, mode)
        batches[mode] = batch
        # the mode sets the train fields CodeRL's code implies
        assert run.train.rl_mix == ("micro_alternate" if mode == "paper_faithful" else "sum")
        assert run.train.critic_pool_padding == (mode == "paper_faithful")
        assert sorted(batch["index"].tolist()) == [0, 1, 2, 3]
        for r, idx in enumerate(batch["index"]):
            row = ROWS[idx]
            n = int(batch["target_mask"][r].sum())
            assert not batch["token_returns"][r, n:].any()
            if mode == "fixed":
                np.testing.assert_array_equal(batch["targets"][r, :3], row["output_ids"])
                np.testing.assert_array_equal(batch["target_mask"][r], [1, 1, 1, 0, 0, 0, 0, 0])
                np.testing.assert_allclose(batch["token_returns"][r, :3], HAND_GREEDY[idx],
                                           rtol=1e-6)
                continue
            # CodeRL's RL samples: the decoded program re-tokenised after reindent_code; the
            # critic scores of the sampled ids do not align with it, so (no critic here) every
            # token carries the sequence return
            text = coderl_reindent(tok.decode(row["output_ids"], skip_special_tokens=True))
            assert batch["targets"][r, :n].tolist() == tok.encode(text)[:8]
            np.testing.assert_allclose(batch["token_returns"][r, :n],
                                       HAND_GREEDY[idx][0] / PROBS_TRUE[idx], rtol=1e-6)
    fixed, faithful = batches["fixed"], batches["paper_faithful"]
    np.testing.assert_array_equal(fixed["index"], faithful["index"])  # same seeded order
    # paper_faithful RL sources: generate.py's prompt, EOS-padded, no mask
    table = problems_by_id(load_problems("demo", "train"))
    for r, idx in enumerate(faithful["index"]):
        want = tok.encode(build_prompt(table[ROWS[idx]["problem_id"]], "generate"))
        assert faithful["encoder_ids"][r].tolist() == want + [2] * (256 - len(want))
    assert faithful["encoder_mask"].all()
    # the ground-truth half keeps the training prompt: fixed pads it with 0 under a 0 mask,
    # paper_faithful holds the same tokens padded with EOS (2) under an all-ones mask
    ids, mask = fixed["gt_encoder_ids"], fixed["gt_encoder_mask"]
    assert not mask.all() and (ids[mask == 0] == 0).all() and (ids[mask == 1] > 0).all()
    np.testing.assert_array_equal(faithful["gt_encoder_ids"], np.where(mask > 0, ids, 2))
    assert faithful["gt_encoder_mask"].all()
    assert (faithful["gt_encoder_ids"] == 2).sum() > (ids == 2).sum()
    # and fixed's RL sources are the training prompt under a mask
    assert not fixed["encoder_mask"].all()


def test_offline_mean_others_baseline(tmp_path, tokenizer_dir):
    _, batch = _offline_batch(tmp_path, tokenizer_dir, "fixed", baseline="mean_others")
    for r, idx in enumerate(batch["index"]):
        np.testing.assert_allclose(batch["token_returns"][r, :3], HAND_MEAN_OTHERS[idx], rtol=1e-6)


def test_bad_rl_settings_are_user_errors():
    from coderl_jax.train.run import base_config, run_config

    for key, value in (("mode", "faithful"), ("baseline", "median"), ("num_samples", 0)):
        cfg = base_config("tiny", "online_rl")
        cfg.rl[key] = value
        with pytest.raises(UserError):
            run_config(cfg)


@pytest.mark.parametrize("name, stage", [
    ("tiny:stage=critic", "critic"), ("tiny:stage=offline_rl", "offline_rl"),
    ("tiny:stage=online_rl", "online_rl"),
    ("codet5:stage=critic", "critic"), ("codet5:size=base,stage=critic", "critic"),
    ("codet5:stage=offline_rl", "offline_rl"), ("codet5:stage=online_rl", "online_rl")])
def test_rl_configs_load(name, stage):
    from coderl_jax.config import load_config
    from coderl_jax.train.run import run_config

    path = f"configs/{name.replace(':', '.py:') if ':' in name else name + '.py'}"
    run = run_config(load_config(path))
    assert run.train.stage == stage and run.rl.mode == "fixed"
    faithful = run_config(load_config(path, ["rl.mode=paper_faithful"]))
    assert faithful.train.rl_mix == "micro_alternate" and faithful.train.critic_pool_padding


def test_warmup_batches_follow_the_mode(tokenizer_dir):
    """CodeRL pads every stage's sources with EOS to the source length and passes no mask, the
    warm-up included; `fixed` keeps 0-padding under a mask."""
    from coderl_jax.tokenizer import load_tokenizer
    from coderl_jax.train.run import base_config, run_config
    from coderl_jax.train.sources import make_source

    batches = {}
    for mode in ("fixed", "paper_faithful"):
        cfg = base_config("tiny", "warmup")
        cfg.train.batch_size = 4
        cfg.data.problems, cfg.data.split = "demo", "train"
        cfg.data.tokenizer = str(tokenizer_dir)
        cfg.data.max_source_len, cfg.data.max_target_len = 256, 64
        cfg.rl.mode = mode
        run = run_config(cfg)
        batches[mode] = next(make_source("warmup", run.data, run.train,
                                         load_tokenizer(str(tokenizer_dir)), run=run))
    fixed, faithful = batches["fixed"], batches["paper_faithful"]
    ids, mask = fixed["encoder_ids"], fixed["encoder_mask"]
    assert ids.shape[1] == 256 and not mask.all() and (ids[mask == 0] == 0).all()
    np.testing.assert_array_equal(faithful["encoder_ids"], np.where(mask > 0, ids, 2))
    assert faithful["encoder_mask"].all()
    np.testing.assert_array_equal(faithful["targets"], fixed["targets"])


@pytest.mark.parametrize("size", ["small", "base", "large"])
@pytest.mark.parametrize("stage", ["warmup", "critic", "offline_rl", "online_rl"])
def test_coderl_recipe_configs_use_coderl_optimizer(size, stage):
    """train.py's TrainingArguments: AdamW, weight_decay 0.05, constant_with_warmup with 0
    warm-up steps, max_grad_norm 1.0 (the default), lr 2e-5; RL: --grad-acc-steps 4."""
    from coderl_jax.config import load_config
    from coderl_jax.train.run import run_config

    run = run_config(load_config(f"configs/codet5.py:size={size},stage={stage}"))
    opt = run.optimizer
    assert (opt.learning_rate, opt.weight_decay, opt.schedule, opt.warmup_steps,
            opt.grad_clip_norm) == (2e-5, 0.05, "constant", 0, 1.0)
    assert run.train.stage == stage and run.model.d_model == MODEL_SIZES[size]["d_model"]
    if stage == "offline_rl":
        assert run.train.num_microbatches == 4


def test_codet5_config_variants():
    from coderl_jax.config import load_config

    large = load_config("configs/codet5.py")
    assert (large.model.size, large.train.stage, large.model.remat) == ("large", "warmup", True)
    critic = load_config("configs/codet5.py:size=base,stage=critic")
    assert critic.train.num_microbatches == 1 and critic.critic.num_classes == 4  # CodeRL's
    assert load_config("configs/codet5.py:stage=critic").train.num_microbatches == 2
    pod = load_config("configs/codet5.py:stage=online_rl,topology=v4-32")
    assert pod.train.batch_size == 64 and pod.rl.top_k == 50
    for arg, message in (("size=huge", "unknown size 'huge'"), ("stage=rl", "unknown stage"),
                         ("v4-32", "takes size=, stage= and topology="),
                         ("color=red", "takes size=")):
        with pytest.raises(UserError, match=message):
            load_config(f"configs/codet5.py:{arg}")


def test_harness_follows_the_mode_unless_set():
    from coderl_jax.train.run import base_config, run_config

    for mode, set_to, want in (("fixed", "", "real"), ("paper_faithful", "", "coderl"),
                               ("paper_faithful", "real", "real"), ("fixed", "coderl", "coderl")):
        cfg = base_config("tiny", "online_rl")
        cfg.rl.mode, cfg.rl.harness = mode, set_to
        assert run_config(cfg).rl.harness == want
    cfg = base_config("tiny", "online_rl")
    cfg.rl.harness = "inprocess"
    with pytest.raises(UserError, match="rl.harness"):
        run_config(cfg)


def test_paper_faithful_cuts_long_training_sources_plainly(tokenizer_dir):
    """CodeRL's sample_task cuts `input_ids[:600]` (no final </s>); HF truncation, which
    `fixed` and every sampler use, keeps one."""
    from coderl_jax.data.prompts import truncate_prompt as truncate_source
    from coderl_jax.tokenizer import load_tokenizer
    from coderl_jax.train.run import base_config, run_config
    from coderl_jax.train.sources import make_source

    assert truncate_source([1, 5, 6, 7, 2], 3, 2) == [1, 5, 2]
    assert truncate_source([1, 5, 6, 7, 2], 3, 2, plain=True) == [1, 5, 6]
    assert truncate_source([1, 5, 2], 3, 2, plain=True) == [1, 5, 2]
    batches = {}
    for mode in ("fixed", "paper_faithful"):
        cfg = base_config("tiny", "warmup")
        cfg.train.batch_size = 2
        cfg.data.problems, cfg.data.split = "demo", "train"
        cfg.data.tokenizer = str(tokenizer_dir)
        cfg.data.max_source_len, cfg.data.max_target_len = 8, 8  # every demo prompt is longer
        cfg.rl.mode = mode
        run = run_config(cfg)
        assert run.train.source_cut == ("plain" if mode == "paper_faithful" else "eos")
        assert run.train.sequence_mean == (mode == "paper_faithful")
        batches[mode] = next(make_source("warmup", run.data, run.train,
                                         load_tokenizer(str(tokenizer_dir)), run=run))
    fixed, faithful = batches["fixed"]["encoder_ids"], batches["paper_faithful"]["encoder_ids"]
    assert (fixed[:, -1] == 2).all() and (faithful[:, -1] != 2).all()
    np.testing.assert_array_equal(fixed[:, :-1], faithful[:, :-1])


def _coderl_generate_prompt(folder) -> str:
    """CodeRL's generate.py `generate_prompt` for an APPS problem folder (re-derived here)."""
    text = "\nQUESTION:\n" + (folder / "question.txt").read_text()
    if (folder / "starter_code.py").is_file():
        text += "\n" + (folder / "starter_code.py").read_text()
    fn_name = json.loads((folder / "input_output.json").read_text()).get("fn_name")
    return text + ("\nUse Call-Based format" if fn_name else "\nUse Standard Input format") \
        + "\nANSWER:\n"


@pytest.mark.parametrize("mode", ["fixed", "paper_faithful"])
def test_offline_rl_samples_follow_the_mode(tokenizer_dir, mode, monkeypatch):
    """paper_faithful: each RL sample's source is CodeRL's generate.py prompt, HF-truncated
    (final </s> kept) and EOS-padded, and its target `encode(reindent_code(code))`, whatever ids
    the actor sampled (CodeRL's generate_critic_inputs -> sample_rl_task); fixed: the training
    prompt and the sampled ids."""
    from coderl_jax.rl.offline import make_batch_source
    from coderl_jax.tokenizer import load_tokenizer
    from coderl_jax.train.run import base_config, run_config
    from coderl_jax.train.stage_context import StageContext

    from conftest import REPO

    apps = REPO / "tests" / "data" / "apps" / "train"
    code = "def f(x):\n    if x:\n        return 1\n    return 0"
    reindented = "def f(x):\n\tif x:\n\t\treturn 1\n\treturn 0\n"  # CodeRL's reindent_code
    tok = load_tokenizer(str(tokenizer_dir))
    sampled = tok.encode(code)  # what the actor drew: decoded, it is `code`
    rows = [{"problem_id": pid, "code": code, "output_ids": sampled, "result": r}
            for pid, r in (("0001", -1), ("2404", 1))]
    cfg = base_config("tiny", "offline_rl")
    cfg.train.batch_size = 2
    cfg.data.problems, cfg.data.split = str(apps), ""
    cfg.data.tokenizer = str(tokenizer_dir)
    cfg.data.max_source_len, cfg.data.max_target_len = 48, 16
    cfg.rl.mode, cfg.rl.baseline = mode, "none"
    run = run_config(cfg)
    monkeypatch.setattr("coderl_jax.rl.programs.load_program_rows",
                        lambda _path: [dict(r) for r in rows])
    data = dataclasses.replace(run.data, programs="rows above")
    batch = next(make_batch_source(StageContext(data, run.train, tok, run=run)))
    S, T = 48, 16
    for r in range(2):
        row = rows[int(batch["index"][r])]
        n = int(batch["target_mask"][r].sum())
        reward = {-1: -0.6, 1: 1.0}[row["result"]]  # CodeRL's rewards, no baseline
        np.testing.assert_allclose(batch["token_returns"][r, :n], reward, rtol=1e-6)
        if mode == "fixed":
            assert batch["targets"][r, :n].tolist() == sampled[:T]
            continue
        want_src = tok.encode(_coderl_generate_prompt(apps / row["problem_id"]))
        assert len(want_src) > S  # cut as HF does: the first S-1 ids and </s>
        assert batch["encoder_ids"][r].tolist() == want_src[:S - 1] + [tok.eos_id]
        assert batch["encoder_mask"][r].all()
        want_tgt = tok.encode(reindented)[:T]
        assert batch["targets"][r, :n].tolist() == want_tgt and n == len(want_tgt)
    if mode == "paper_faithful":  # the ground-truth half keeps the training prompt, plain cut
        from coderl_jax.data.prompts import build_prompt
        from coderl_jax.data.sources import load_problems

        prompts = {tuple(tok.encode(build_prompt(p))[:S]) for p in load_problems(str(apps))}
        assert {tuple(ids) for ids in batch["gt_encoder_ids"].tolist()} <= prompts

"""rl.temperature / rl.top_p / rl.top_k reach the sampler online RL draws its programs with
(a spy on the Sampler the stage builds; the run stops there); under paper_faithful online RL
learns from CodeRL's RL samples (a spy on the first batch it builds)."""
import numpy as np
import pytest

from coderl_jax.data.pipeline import coderl_reindent
from coderl_jax.data.prompts import build_prompt, truncate_prompt
from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.inference.sampler import Sampler
from coderl_jax.rl import online, reward
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.train.run import base_config, run_config, train_stage


def _tiny_online(tokenizer_dir, **rl):
    cfg = base_config("tiny", "online_rl")
    cfg.model.num_encoder_layers = cfg.model.num_decoder_layers = 1
    cfg.train.num_steps, cfg.train.batch_size = 1, 4
    cfg.data.problems, cfg.data.split = "demo", "train"
    cfg.data.tokenizer = str(tokenizer_dir)
    cfg.data.max_source_len, cfg.data.max_target_len = 64, 16
    cfg.checkpoint.async_save = False
    cfg.rl.update(dict(num_samples=2, overlap_depth=0, baseline="none", workers=1, **rl))
    return cfg


class _Built(Exception):
    """Raised by the spy once the stage has built its (non-greedy) sampler."""


def test_rl_sampling_settings_reach_the_online_sampler(tmp_path, tokenizer_dir, monkeypatch):
    seen = []
    original = Sampler.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.sampling)
        if not self.sampling.is_greedy:
            raise _Built

    monkeypatch.setattr(Sampler, "__init__", spy)
    cfg = _tiny_online(tokenizer_dir, temperature=0.3, top_p=0.5, top_k=7)
    with pytest.raises(_Built):
        train_stage(run_config(cfg), tmp_path / "w", progress=False)
    sampled = [s for s in seen if not s.is_greedy]
    assert [(s.temperature, s.top_p, s.top_k) for s in sampled] == [(0.3, 0.5, 7)]


def test_paper_faithful_online_rl_learns_from_coderl_rl_samples(tmp_path, tokenizer_dir,
                                                                 monkeypatch):
    """Sampled after generate.py's prompt; the batch holds the re-tokenised, reindented program
    text after that prompt (cut keeping `</s>`), as CodeRL's offline RL samples; `fixed` keeps
    the training prompt and the sampled ids."""
    tok = load_tokenizer(str(tokenizer_dir))
    table = problems_by_id(load_problems("demo", "train"))
    original_rows, original_batch = online.coderl_rl_rows, reward.rl_batch
    for mode, style in (("paper_faithful", "generate"), ("fixed", "train")):
        seen = {}

        def rows_spy(rows, *args, **kwargs):
            seen["sampled"] = [dict(r) for r in rows]
            return original_rows(rows, *args, **kwargs)

        def batch_spy(rows, *args, **kwargs):
            seen["rows"], seen["kwargs"] = rows, kwargs
            seen["batch"] = original_batch(rows, *args, **kwargs)
            raise _Built

        monkeypatch.setattr(online, "coderl_rl_rows", rows_spy)
        monkeypatch.setattr(reward, "rl_batch", batch_spy)
        cfg = _tiny_online(tokenizer_dir, mode=mode, harness="real")
        with pytest.raises(_Built):
            train_stage(run_config(cfg), tmp_path / mode, progress=False)
        rows, kwargs = seen["rows"], seen["kwargs"]
        assert kwargs["prompt_style"] == style
        if mode == "fixed":  # the training prompt, the sampled ids
            assert "sampled" not in seen and kwargs["source_cut"] == "eos"
            for row in rows:
                assert row["prompt_ids"] == truncate_prompt(
                    tok.encode(build_prompt(table[row["problem_id"]], "train")), 64, tok.eos_id)
            continue
        assert kwargs["source_cut"] == "eos"
        sampled = seen["sampled"]
        assert [r["problem_id"] for r in sampled] == [r["problem_id"] for r in rows]
        for before, after in zip(sampled, rows):
            want = truncate_prompt(tok.encode(build_prompt(table[before["problem_id"]],
                                                           "generate")), 64, tok.eos_id)
            assert before["prompt_ids"] == want  # sampled after the generate.py prompt
            text = tok.decode(before["output_ids"], skip_special_tokens=True)
            assert after["output_ids"] == tok.encode(coderl_reindent(text))[:16]
        batch = seen["batch"]
        first = truncate_prompt(tok.encode(build_prompt(table[rows[0]["problem_id"]],
                                                        "generate")), 64, tok.eos_id)
        train = tok.encode(build_prompt(table[rows[0]["problem_id"]], "train"))[:len(first)]
        assert first != train
        assert np.asarray(batch["encoder_ids"])[0, :len(first)].tolist() == first

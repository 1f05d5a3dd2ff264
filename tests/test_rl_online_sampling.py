"""rl.temperature / rl.top_p / rl.top_k reach the sampler online RL draws its programs with
(a spy on the Sampler the stage builds; the run stops there)."""
import pytest

from coderl_jax.inference.sampler import Sampler
from coderl_jax.train.run import base_config, run_config, train_stage


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
    cfg = base_config("tiny", "online_rl")
    cfg.model.num_encoder_layers = cfg.model.num_decoder_layers = 1
    cfg.train.num_steps, cfg.train.batch_size = 1, 4
    cfg.data.problems, cfg.data.split = "demo", "train"
    cfg.data.tokenizer = str(tokenizer_dir)
    cfg.data.max_source_len, cfg.data.max_target_len = 64, 16
    cfg.checkpoint.async_save = False
    cfg.rl.update(dict(num_samples=2, temperature=0.3, top_p=0.5, top_k=7, overlap_depth=0,
                       baseline="none", workers=1))
    with pytest.raises(_Built):
        train_stage(run_config(cfg), tmp_path / "w", progress=False)
    sampled = [s for s in seen if not s.is_greedy]
    assert [(s.temperature, s.top_p, s.top_k) for s in sampled] == [(0.3, 0.5, 7)]

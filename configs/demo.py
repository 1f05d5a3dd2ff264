"""`coderl demo` / `make demo`: the whole CodeRL loop on the bundled demo problems, tiny model.

    coderl demo --workdir demo_workdir [--config configs/demo.py]
                [--config.warmup.train.num_steps=N]

Each training stage is the tiny config of that stage (configs/tiny.py:stage=S) with the demo's
settings below; `eval` is how every stage's actor is measured on the held-out demo problems,
`critic_data` and `critical_sampling` are the settings of those steps. Sized for 2 CPU cores
and at most 15 minutes end to end: the prompts of the demo problems are at most 209 tokens and
their reference programs at most 88, hence the lengths.
"""
from pathlib import Path

import ml_collections

from coderl_jax.config import load_config

HERE = Path(__file__).resolve().parent
SOURCE_LEN, TARGET_LEN = 224, 96
TRAIN_SCALE = 3
# the actor keeps configs/tiny.py's shape. Measured (seed 0, 600 warm-up steps, held-out
# pass@1): tiny with the corpus vocabulary 0.017 on the bundled problems, 0.023 on demo:3;
# d_model 128 with 3+3 layers on demo:3 0.011 (2.5x the compute per step, and it passes only 8%
# of its own training problems greedily at 600 steps: undertrained)


def _stage(stage: str, **fields) -> ml_collections.ConfigDict:
    """configs/tiny.py's `stage` with `section__field=value` overrides."""
    cfg = load_config(f"{HERE / 'tiny.py'}:stage={stage}")
    cfg.data.max_source_len = SOURCE_LEN
    cfg.data.max_target_len = TARGET_LEN
    cfg.model.dropout_rate = 0.0  # a few hundred steps on 600 programs: dropout only slows it
    cfg.checkpoint.every_steps = 100_000  # the final model is saved anyway
    for key, value in fields.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.tokenizer = ""  # "" = $CODERL_TOKENIZER or the packaged CodeT5 tokenizer
    # "corpus": that tokenizer restricted to the tokens of the training problems (~2k of 32100,
    # ids renumbered; every model checkpoint carries it, and so does the export); "full": as is
    cfg.vocabulary = "corpus"
    # training problems per family: TRAIN_SCALE times the bundled set's (held-out unchanged)
    cfg.train_scale = TRAIN_SCALE
    # actor warm-up: cross-entropy on the reference programs of the 299 training problems
    cfg.warmup = _stage("warmup", train__num_steps=600, train__batch_size=16, train__log_every=25,
                        optimizer__learning_rate=1e-2, optimizer__warmup_steps=20)
    # N samples + 1 greedy program per training problem, executed (the critic's and RL's data)
    cfg.critic_data = ml_collections.ConfigDict(dict(
        num_samples=3, temperature=0.6, top_p=1.0, top_k=0, max_new_tokens=TARGET_LEN,
        # limit: first N training problems (0: all 299)
        batch_size=64, workers=2, timeout=4.0, limit=0))
    # 300 steps at 1e-3 measured no better than these (held-out AUROC 0.58 vs 0.59): see README
    cfg.critic = _stage("critic", train__num_steps=150, train__batch_size=16,
                        optimizer__learning_rate=3e-3, rl__eval_fraction=0.1)
    cfg.offline_rl = _stage("offline_rl", train__num_steps=60, train__batch_size=16,
                            optimizer__learning_rate=1e-3)
    # rl.timeout 1 s per test, not 4: the demo's programs finish in milliseconds, so only
    # programs that never finish reach either limit, and the rewards (and params: seeds 0-2 gave
    # identical final params) are the same; at 4 s each such program held the sandbox so long
    # that the device sat idle 13-20% of seed 2's stage (1-2% at 1 s; see README)
    cfg.online_rl = _stage("online_rl", train__num_steps=40, train__batch_size=16,
                           optimizer__learning_rate=1e-3, rl__top_p=1.0, rl__top_k=0,
                           rl__num_samples=4, rl__timeout=1.0)
    # how each stage's actor is measured: samples per held-out problem -> pass@1, pass@5
    cfg.eval = ml_collections.ConfigDict(dict(
        num_samples=10, temperature=0.6, top_p=1.0, top_k=0, max_new_tokens=TARGET_LEN,
        # limit: first N held-out problems (0: all 81)
        batch_size=80, limit=0, workers=2, timeout=4.0))
    # critical sampling with the final actor and the critic, same budget as `eval`
    cfg.critical_sampling = ml_collections.ConfigDict(dict(
        num_samples=5, rounds=1, top_m=2, temperature=0.6, top_p=1.0, top_k=0,
        max_new_tokens=TARGET_LEN, batch_size=80))
    return cfg

"""Critical sampling on APPS test (settings for `coderl critical-sampling --config`).

    coderl critical-sampling --config configs/critical_sampling_apps.py --checkpoint $CKPT \
        --critic $CRITIC --tokenizer $TOK --problems $APPS_TEST --out $W/critical.jsonl \
        [--repair-checkpoint $REPAIR]

N=200 programs per problem, then one refine/repair round of 200 more (400 per problem, every one
with hidden-test result, example-test result and critic P(passed)); repairs take the top M=5
failing programs. Sampling as CodeRL's generate.py (temperature 0.6, top-p 0.95, top-k 50 -- the
transformers 4.16 `generate` default it ran with -- and 511 new tokens: its max_length=512 counts
the decoder start token).
`--config.FIELD=VALUE` changes a value (e.g. `--config.num_samples=50`). Evaluate with
`coderl evaluate --results $W/critical.jsonl --k 1,5,100 --n 1,5` (or configs/eval_apps.py
--config.method=critical_sampling, which runs both).
"""
import ml_collections


def get_config():
    return ml_collections.ConfigDict(dict(
        num_samples=200, rounds=1, top_m=5, temperature=0.6, top_p=0.95, top_k=50,
        max_new_tokens=511, max_source_len=600, repair_max_source_len=1024, max_target_len=512,
        batch_size=50, critic_batch_size=50, workers=8, timeout=4.0, block_size=16))

"""Critical sampling on the bundled demo problems with the demo's tiny models.

    coderl critical-sampling --config configs/critical_sampling_demo.py --checkpoint $ACTOR \
        --critic $CRITIC --problems demo --split heldout --out $W/critical.jsonl

Held-out demo problems, N=8 programs per problem then one refine/repair round of 8 (16 per
problem: compare with 16 plain samples, e.g. via
coderl_jax.inference.critical_sampling.compare_plain_vs_critical), M=2, source/target lengths of
configs/tiny.py (256).
"""
import ml_collections


def get_config():
    return ml_collections.ConfigDict(dict(
        num_samples=8, rounds=1, top_m=2, temperature=0.6,
        top_p=0.95, top_k=0, max_new_tokens=256, max_source_len=256, repair_max_source_len=512,
        max_target_len=256, batch_size=16, critic_batch_size=32, workers=2, timeout=4.0,
        block_size=16))

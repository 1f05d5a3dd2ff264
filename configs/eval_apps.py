"""APPS test evaluation (CodeRL Table 1): pass@1/5/1000, and 1@k/5@k filtered by example tests.

Run from the repository root (APPS test split with CodeRL's example_input_output.json copied into
each problem folder, see the README section "Evaluation and critical sampling"):

    python configs/eval_apps.py --checkpoint $CKPT --tokenizer $TOK --problems $APPS_TEST \
        --workdir $W

runs `coderl generate` (1000 programs per problem, temperature 0.6, top-p 0.95, top-k 50, at most
511 new tokens: CodeRL's generate.sh / generate.py settings under transformers 4.16, whose
`generate` silently applies top-k 50 and counts the decoder start token in max_length=512) ->
`coderl run-tests` on the hidden tests ->
`coderl run-tests --example-tests` -> `coderl evaluate` (pass@1/5/1000 with the unbiased
estimator; n@k: programs passing the example tests ranked by log-probability, exact expectation
over k-subsets; per difficulty). Writes $W/samples.jsonl, results.jsonl, example_results.jsonl,
metrics.json and settings.json (this config, the commands, versions, metrics).

With critical sampling instead (needs a critic; the settings of configs/critical_sampling_apps.py:
N=200 per round, 1 round, M=5, so 400 programs per problem, pass@1/5/100 and 1@k/5@k ranked by
the critic):

    python configs/eval_apps.py --checkpoint $CKPT --critic $CRITIC --tokenizer $TOK \
        --problems $APPS_TEST --workdir $W_CS --config.method=critical_sampling

`--dry-run` prints the commands; `--config.FIELD=VALUE` changes a field (e.g.
`--config.limit=50`, `--config.num_samples=200 --config.ks='(1,5,100)'`).
"""
import sys

from coderl_jax.eval_recipes import main, recipe_config


def get_config():
    return recipe_config(
        "eval_apps", problems="data/APPS/test", num_samples=1000, temperature=0.6, top_p=0.95,
        top_k=50, max_new_tokens=511, batch_size=50, timeout=4.0, ks=(1, 5, 1000), ns=(1, 5),
        example_tests=True, cs_config="configs/critical_sampling_apps.py", cs_ks=(1, 5, 100))


if __name__ == "__main__":
    sys.exit(main(get_config))

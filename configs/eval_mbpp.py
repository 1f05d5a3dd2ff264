"""MBPP zero-shot evaluation (CodeRL Table 5: pass@80 on the 500 test problems, 11-510).

An APPS-trained actor is prompted with the MBPP problem text and its first test (SPEC §6) and
never trained on MBPP. Run from the repository root:

    python configs/eval_mbpp.py --checkpoint $CKPT --tokenizer $TOK --problems $MBPP \
        --workdir $W

($MBPP: the `mbpp.jsonl` of the MBPP release) runs `coderl generate` (80 programs per problem;
temperature 0.6 / top-p 0.95 / top-k 50 / 511 new tokens, CodeRL's APPS sampling settings under
transformers 4.16, since its MBPP settings are not in its released code) -> `coderl run-tests`
(every assert of test_list) -> `coderl evaluate`
(pass@1 and pass@80). Writes $W/samples.jsonl, results.jsonl, metrics.json and settings.json.
"""
import sys

from coderl_jax.eval_recipes import main, recipe_config


def get_config():
    return recipe_config(
        "eval_mbpp", problems="data/mbpp/mbpp.jsonl", split="test", num_samples=80,
        temperature=0.6, top_p=0.95, top_k=50, max_new_tokens=511, batch_size=40, timeout=4.0,
        ks=(1, 80), example_tests=False)


if __name__ == "__main__":
    sys.exit(main(get_config))

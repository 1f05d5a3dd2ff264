"""`coderl critic-data`: N sampled + 1 greedy program per problem, executed; critic / RL data.

    coderl critic-data --checkpoint WARMUP/model --problems demo --split train --out CD \
        [--num-samples 20] [--temperature 0.6] [--top-p 0.95] [--top-k 50] [--workers 2] \
        [--timeout 4]

What CodeRL does with `generate.py` (sampling, then greedy) and its unit-test scripts, in one
command. Writes CD/programs.jsonl, CD/greedy.jsonl, CodeRL's CD/<problem>/gen_solutions.json and
baseline_solutions.json, a TFDS array_record dataset CD/array_record/ and CD/summary.json; any of
these feeds `coderl train` (critic: --config.data.programs=CD) and `coderl critic-score`.
"""
from __future__ import annotations

import json

from coderl_jax.commands import arguments
from coderl_jax.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("critic-data", help="sample N + greedy programs per problem and execute "
                                           "them (critic / RL training data)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="the warmed-up actor (model folder/workdir)")
    arguments.add_problems(p, split_help="split of SRC where it has several (demo: train)")
    p.add_argument("--out", required=True, help="output folder")
    arguments.add_tokenizer(p)
    p.add_argument("--num-samples", type=int, default=20, help="sampled programs per problem "
                                                                "(CodeRL: 20)")
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy baseline programs")
    p.add_argument("--temperature", type=float, default=0.6,
                   help="sampling temperature (CodeRL's generate.sh: 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus mass (CodeRL: 0.95)")
    p.add_argument("--top-k", type=int, default=50,
                   help="sample among the k likeliest, 0: off (CodeRL: 50, the default of the "
                        "transformers 4.16 generate it ran)")
    p.add_argument("--max-new-tokens", type=int, default=511,
                   help="longest program in tokens (CodeRL: 511, its max_length=512 counts the "
                        "decoder start token)")
    p.add_argument("--max-source-len", type=int, default=600, help="longest prompt in tokens")
    p.add_argument("--batch-size", type=int, default=8, help="rows per decode call")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--workers", type=int, default=2, help="sandbox processes")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds per test")
    p.add_argument("--harness", choices=("real", "coderl"), default="real",
                   help="how programs run, as `coderl run-tests --harness` (coderl: CodeRL's "
                        "in-process labels)")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--no-tfds", action="store_true", help="do not build the TFDS dataset")
    p.set_defaults(func=run)


def run(args) -> int:
    for flag, value in (("--num-samples", args.num_samples), ("--workers", args.workers),
                        ("--batch-size", args.batch_size),
                        ("--max-new-tokens", args.max_new_tokens),
                        ("--max-source-len", args.max_source_len)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if not (args.temperature >= 0) or not (0 < args.top_p <= 1) or not (args.timeout > 0):
        raise UserError("--temperature >= 0, --top-p in (0, 1] and --timeout > 0 needed")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0, got {args.top_k}")
    from coderl_jax import paths

    paths.require_exists(args.checkpoint, "checkpoint")
    if paths.as_path(args.out).is_file():
        raise UserError(f"--out {args.out} is a file; give a folder")
    from coderl_jax.checkpoint_io import model_tokenizer
    from coderl_jax.data.sources import load_problems
    from coderl_jax.partitioning import make_mesh
    from coderl_jax.rl.program_dataset import generate_critic_data

    problems = load_problems(args.problems, args.split)
    if args.limit:
        problems = problems[: args.limit]
    summary = generate_critic_data(
        args.checkpoint, problems, args.out,
        tokenizer=model_tokenizer(args.tokenizer, args.checkpoint),
        num_samples=args.num_samples, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens, max_source_len=args.max_source_len,
        batch_size=args.batch_size, seed=args.seed, workers=args.workers, timeout=args.timeout,
        mesh=make_mesh(), greedy=not args.no_greedy, tfds=not args.no_tfds,
        harness=args.harness)
    print(json.dumps(summary))
    return 0

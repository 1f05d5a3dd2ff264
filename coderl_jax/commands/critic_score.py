"""`coderl critic-score`: critic outcome probabilities per program and token (docs/SPEC.md §3).

    coderl critic-score --checkpoint CRITIC --problems SRC --programs IN.jsonl --out OUT.jsonl

Each input row (at least `problem_id` and `code` or `output_ids`) is written back with
`prompt_ids`, `program_ids` (the decoder targets the critic read), `probs` (class probabilities
from compile error to passed) and `token_probs` (class probabilities at each program token): what
CodeRL stores as gen_solutions_critic_scores.pkl. With `result` in the rows it also prints the
critic's accuracy against the majority class and the AUROC and Brier score of its P(passed). IN
may also be a critic-data or CodeRL layout folder. `--mode paper_faithful` scores as CodeRL's
`generate.py --critic_scores`: EOS-padded unmasked generate.py prompts, each program re-tokenised
from its reindented code (what offline RL reads under rl.mode=paper_faithful).
"""
from __future__ import annotations

import json
import sys

from coderl_jax.commands import arguments
from coderl_jax.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("critic-score", help="critic outcome probabilities per program and token",
                       description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="critic checkpoint (model folder/workdir)")
    arguments.add_problems(p)
    p.add_argument("--programs", required=True,
                   help="program rows (.jsonl) or a critic-data folder")
    p.add_argument("--out", required=True, help="output JSON lines file")
    arguments.add_tokenizer(p)
    p.add_argument("--mode", choices=("fixed", "paper_faithful"), default="fixed",
                   help="paper_faithful: CodeRL's RL data (EOS-padded unmasked generate.py "
                        "prompts, re-tokenised programs), pooling over padding")
    p.add_argument("--batch-size", type=int, default=8, help="programs per device call")
    p.add_argument("--max-source-len", type=int, default=600, help="longest prompt in tokens")
    p.add_argument("--max-target-len", type=int, default=512, help="longest program in tokens")
    p.set_defaults(func=run)


def run(args) -> int:
    for flag, value in (("--batch-size", args.batch_size),
                        ("--max-target-len", args.max_target_len)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if args.max_source_len < 2:
        raise UserError("--max-source-len must be >= 2")
    from coderl_jax import paths

    paths.require_exists(args.checkpoint, "checkpoint")
    if paths.as_path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a .jsonl file path")
    from tqdm import tqdm

    from coderl_jax.checkpoint_io import model_tokenizer
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.files import atomic_write
    from coderl_jax.partitioning import make_mesh
    from coderl_jax.rl.programs import CODERL_RL_PROMPT_STYLE, coderl_rl_rows, load_program_rows
    from coderl_jax.rl.scoring import load_scorer, score_rows

    rows = load_program_rows(args.programs)
    if not rows:
        raise UserError(f"no program rows in {args.programs}")
    table = problems_by_id(load_problems(args.problems, args.split))
    tokenizer = model_tokenizer(args.tokenizer, args.checkpoint)
    faithful = args.mode == "paper_faithful"
    if faithful:
        rows = coderl_rl_rows(rows, tokenizer, args.max_target_len)
    scorer = load_scorer(args.checkpoint, mesh=make_mesh(),
                         pool_padding=args.mode == "paper_faithful")
    preds, labels, p_passed = [], [], []
    with atomic_write(args.out) as f, tqdm(total=len(rows), desc="critic-score", unit="prog",
                                           file=sys.stderr, disable=None) as bar:
        for row in score_rows(scorer, rows, table, tokenizer, batch_size=args.batch_size,
                              max_source_len=args.max_source_len,
                              max_target_len=args.max_target_len, mode=args.mode,
                              prompt_style=CODERL_RL_PROMPT_STYLE if faithful else "train",
                              progress=bar.update):
            f.write(json.dumps(row) + "\n")
            if "result" in row:
                from coderl_jax.rl.rewards import outcome_class

                labels.append(outcome_class(row["result"], scorer.num_classes))
                preds.append(max(range(scorer.num_classes), key=lambda c: row["probs"][c]))
                p_passed.append(float(row["probs"][-1]))
    summary = {"programs": len(rows), "out": str(args.out)}
    if labels:
        from coderl_jax.rl.critic_train import classification_report

        summary.update(classification_report(labels, preds, scorer.num_classes,
                                             p_passed=p_passed))
    print(json.dumps(summary))
    return 0

"""`coderl generate`: sample or greedily decode programs; one row per program (docs/SPEC.md §3).

Rows are appended to `OUT.partial` and flushed as each chunk finishes, so an interrupted run keeps
what it made; when every (problem, sample) pair is done the file is renamed to OUT (atomic).
`--resume` continues from `OUT.partial` (and from OUT's rows, if a finished OUT exists): pairs
already written are skipped, a truncated last line is dropped. Without `--resume` any earlier
`OUT.partial` is discarded. OUT may be a gs:// path: there the rows reach the bucket at most
every 30 s (and when the run ends or is interrupted), and the final rename is a copy.
"""
from __future__ import annotations

import json
import sys

from etils import epath

from coderl_jax import paths
from coderl_jax.commands import arguments
from coderl_jax.errors import UserError
from coderl_jax.files import atomic_write


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample or greedily decode programs for problems",
                       description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="actor checkpoint (orbax folder)")
    arguments.add_tokenizer(p)
    arguments.add_problems(p, split_help="split of SRC where it has several (demo, MBPP)")
    p.add_argument("--out", required=True, help="output JSON lines file")
    p.add_argument("--num-samples", type=int, default=None,
                   help="programs per problem (default 1)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--top-k", type=int, default=0,
                   help="sample among the k likeliest, 0: off (CodeRL ran 50)")
    p.add_argument("--greedy", action="store_true",
                   help="greedy decoding (one program per problem)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="longest program in tokens")
    p.add_argument("--max-source-len", type=int, default=600, help="longest prompt in tokens")
    p.add_argument("--prompt-style", choices=("train", "generate"), default="train",
                   help="CodeRL's training prompt (default) or the one its generate.py builds "
                        "(to evaluate released CodeRL checkpoints on CodeRL's inputs)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="(problem, sample) rows per device call")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of OUT")
    p.set_defaults(func=run)


def _validate(args) -> None:
    if args.num_samples is None:
        args.num_samples = 1
    elif args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.greedy and args.num_samples != 1:
        raise UserError("--greedy gives one program per problem; drop --num-samples or use 1")
    if not (args.temperature >= 0) or args.temperature != args.temperature \
            or args.temperature == float("inf"):
        raise UserError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if not (0.0 < args.top_p <= 1.0):
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0, got {args.top_k}")
    for flag, value in (("--max-new-tokens", args.max_new_tokens),
                        ("--max-source-len", args.max_source_len),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if args.max_source_len < 2:
        raise UserError("--max-source-len must be >= 2")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    paths.require_exists(args.checkpoint, "checkpoint")
    out = paths.as_path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a .jsonl file path")


def partial_path(out: epath.Path) -> epath.Path:
    return out.with_name(out.name + ".partial")


def read_done_rows(path: epath.Path) -> list[str]:
    """The complete JSON-object lines of a (partial) output file.

    Rows are written as one `line + newline` each, so only the text after the last newline can be
    cut off by an interruption: it is kept when it is a whole JSON object, else dropped. An
    invalid line before it is a UserError (the file is not one of ours).
    """
    if not path.is_file():
        return []
    *lines, tail = path.read_bytes().split(b"\n")
    good: list[str] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row = _parse(raw)
        if row is None:
            raise UserError(f"{path}:{lineno}: not a JSON object; cannot resume from this file")
        good.append(raw.decode("utf-8"))
    if tail.strip() and _parse(tail) is not None:
        good.append(tail.decode("utf-8"))
    return good


def _parse(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(row, dict) or "problem_id" not in row or "sample_index" not in row:
        return None
    return row


def run(args) -> int:
    _validate(args)
    from tqdm import tqdm

    from coderl_jax.checkpoint_io import load_actor, model_tokenizer
    from coderl_jax.data.sources import load_problems
    from coderl_jax.inference.decoding import SamplingConfig
    from coderl_jax.partitioning import make_mesh
    from coderl_jax.rl import rollout

    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              greedy=args.greedy)
    problems = load_problems(args.problems, args.split)
    if args.limit:
        problems = problems[: args.limit]
    if not problems:
        raise UserError(f"no problems in {args.problems}")
    tokenizer = model_tokenizer(args.tokenizer, args.checkpoint)
    mesh = make_mesh()
    config, params = load_actor(args.checkpoint, mesh)

    out = paths.as_path(args.out)
    part = partial_path(out)
    done_lines: list[str] = []
    if args.resume:
        if out.is_file():
            done_lines += read_done_rows(out)
        done_lines += read_done_rows(part)
    elif part.is_file():
        print(f"coderl generate: discarding {part} of an earlier run (--resume continues it)",
              file=sys.stderr)
    done, kept = set(), []
    for line in done_lines:  # OUT then OUT.partial: keep the first row of each pair
        row = json.loads(line)
        pair = (str(row["problem_id"]), int(row["sample_index"]))
        if pair not in done:
            done.add(pair)
            kept.append(line)
    done_lines = kept

    todo, by_index = [], []
    for p in problems:
        indices = tuple(i for i in range(args.num_samples) if (p.problem_id, i) not in done)
        if indices:
            todo.append(indices)
            by_index.append(p)
    requests = rollout.requests_for(
        by_index, [rollout.prompt_ids(p, tokenizer, args.max_source_len, args.prompt_style)
                   for p in by_index], todo)
    total = sum(len(r.sample_indices) for r in requests)

    # start the partial file from exactly the kept rows (drops a truncated tail)
    paths.make_dirs(out.parent)
    with atomic_write(part) as f:
        for line in done_lines:
            f.write(line + "\n")
    if done_lines:
        print(f"resuming: {len(done)} programs already in {part.name}, {total} to go",
              file=sys.stderr)

    if total:
        sampler = rollout.Rollout(config, params, tokenizer, rollout.RolloutConfig(
            sampling=sampling, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            max_source_len=args.max_source_len), mesh=mesh).sampler
        try:
            with paths.open_append(part) as f, \
                    tqdm(total=total, desc="generate", unit="prog", file=sys.stderr,
                         disable=None) as bar:
                for _, row in rollout.sample_rows(sampler, requests, by_index, tokenizer,
                                                  seed=args.seed, progress=bar.update):
                    f.write(json.dumps(row) + "\n")
                    f.flush()
        except KeyboardInterrupt:
            print(f"coderl generate: kept {len(read_done_rows(part))} programs in {part}; "
                  "rerun with --resume to continue", file=sys.stderr)
            raise
    paths.replace_file(part, out)
    print(f"wrote {len(done) + total} programs to {out}", file=sys.stderr)
    return 0

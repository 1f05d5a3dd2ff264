"""`coderl critical-sampling`: CodeRL inference with refine/repair rounds; also mines repair data.

    coderl critical-sampling --checkpoint ACTOR --critic CRITIC --tokenizer TOK --problems SRC \
        --out OUT.jsonl [--repair-checkpoint C] [--config configs/critical_sampling_X.py] \
        [--config.num_samples=N --config.rounds=R --config.top_m=M ...] [--resume]
    coderl critical-sampling mine-repair --problems SRC --results RESULTS.jsonl --out DIR

The first writes one row per program, every round (see coderl_jax/inference/critical_sampling.py
for the algorithm and the row fields), with hidden-test results, example-test results and critic
scores, so `coderl evaluate --results OUT.jsonl` gives pass@k and n@k directly; the exact
settings and a pass@k/n@k summary go to OUT.settings.json (OUT without .jsonl). Rows are
appended to OUT.partial round by round; `--resume` continues an interrupted run from it (the
settings must match), and OUT appears (atomically) only when every problem is done. The
settings (CriticalSamplingConfig's fields) come from `--config` (else the defaults), each
changed with `--config.FIELD=VALUE`.

`mine-repair` pairs failing programs of executed rows (`coderl run-tests` output) with the
closest passing program of the same problem and writes them as an APPS split folder whose
prompts are the repair prompts; train the repair model on it with
`coderl train --config configs/critical_sampling_repair.py`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time

from coderl_jax import paths as storage  # (`paths` names the run's input paths below)
from coderl_jax.commands import arguments
from coderl_jax.errors import UserError

PATH_KEYS = ("checkpoint", "critic", "tokenizer", "problems", "split", "repair_checkpoint",
             "samples")


def register(sub) -> None:
    from coderl_jax.inference.critical_sampling import CriticalSamplingConfig

    d = CriticalSamplingConfig()
    p = sub.add_parser("critical-sampling", help="CodeRL inference with refine/repair rounds",
                       description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="actor checkpoint (orbax model folder)")
    p.add_argument("--critic", default=None, help="critic checkpoint (binary or 4-class)")
    arguments.add_tokenizer(p)
    arguments.add_problems(p, required=False)
    p.add_argument("--out", default=None, help="output JSON lines file")
    p.add_argument("--repair-checkpoint", default=None,
                   help="repair model (default: the actor repairs)")
    p.add_argument("--samples", default=None, metavar="IN.jsonl",
                   help="use these `coderl generate` rows as round 0 instead of sampling")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of OUT")
    p.add_argument("--compare", action="store_true",
                   help="instead: plain sampling vs critical sampling with the same budget "
                        "(N*(rounds+1) per problem); OUT gets the JSON numbers, OUT.plain.jsonl "
                        "and OUT.critical.jsonl the rows")
    arguments.add_config(p, run, required=False,
                         help="configs/critical_sampling_*.py: the settings (default: "
                              "CriticalSamplingConfig's: "
                              + ", ".join(f.name for f in dataclasses.fields(d)) + ")",
                         example="--config.num_samples=8 --config.rounds=2 --config.top_k=0")

    sp = p.add_subparsers(dest="action", metavar="ACTION")
    m = sp.add_parser("mine-repair", help="mine (failing program, error) -> fix pairs as an "
                                          "APPS folder for training the repair model")
    m.add_argument("--problems", required=True, help="SRC the rows' problems come from")
    m.add_argument("--split", default=None, help="split of SRC where it has several")
    m.add_argument("--results", required=True, metavar="RESULTS.jsonl",
                   help="executed programs (`coderl run-tests` rows with result, error fields)")
    m.add_argument("--out", required=True, metavar="DIR", help="output APPS split folder")
    m.add_argument("--outcome", choices=("hidden", "example"), default="hidden",
                   help="which outcome fields to read: result/error_* (hidden) or "
                        "example_result/example_error_* (rows of critical-sampling)")
    m.add_argument("--no-samples", action="store_true",
                   help="fixes only from reference solutions, not from passing samples")
    m.add_argument("--no-solutions", action="store_true",
                   help="fixes only from passing samples, not from reference solutions")
    m.add_argument("--max-pairs-per-problem", type=int, default=None,
                   help="keep a seeded random subset of each problem's pairs")
    m.add_argument("--seed", type=int, default=0, help="seed of that subset")
    m.add_argument("--max-program-chars", type=int, default=d.max_program_chars)
    m.add_argument("--max-error-chars", type=int, default=d.max_error_chars)
    m.set_defaults(func=run_mine, takes_overrides=False)


# ---- settings -----------------------------------------------------------------------------------

def resolve(args):
    """(paths dict, CriticalSamplingConfig): the defaults, then the --config file, then the
    --config.FIELD=VALUE overrides."""
    import ml_collections

    from coderl_jax.config import apply_override, load_config
    from coderl_jax.inference.critical_sampling import CriticalSamplingConfig

    cfg = ml_collections.ConfigDict(dataclasses.asdict(CriticalSamplingConfig()))
    if args.config:
        given = load_config(args.config).to_dict()
        unknown = sorted(set(given) - set(cfg))
        if unknown:
            raise UserError(f"{args.config}: unknown key(s) {', '.join(unknown)}")
        for k, v in given.items():
            apply_override(cfg, f"{k}={v!r}")
    for item in getattr(args, "overrides", []):
        apply_override(cfg, item)
    paths = {k: getattr(args, k, None) for k in PATH_KEYS}
    return paths, CriticalSamplingConfig(**cfg.to_dict())


def settings_path(out: storage.Path) -> storage.Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".settings.json")


def partial_path(out: storage.Path) -> storage.Path:
    return out.with_name(out.name + ".partial")


def _validate(args, paths) -> None:
    for key, flag in (("checkpoint", "--checkpoint"), ("critic", "--critic"),
                      ("problems", "--problems")):
        if not paths[key]:
            raise UserError(f"{flag} is required")
    if not args.out:
        raise UserError("--out is required")
    for key in ("checkpoint", "critic", "repair_checkpoint", "samples"):
        if paths[key]:
            storage.require_exists(paths[key], key.replace("_", "-"))
    if storage.as_path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a .jsonl file path")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")


def _load_models(paths, mesh):
    from coderl_jax.inference.critical_sampling import load_models

    return load_models(paths["checkpoint"], paths["critic"], paths["repair_checkpoint"], mesh)


def settings_record(args, paths, cfg, problems) -> dict:
    """What the run was: every setting that decides its rows (compared on --resume)."""
    import jax

    return {"command": "critical-sampling", "paths": {k: paths[k] for k in PATH_KEYS},
            "limit": args.limit, "num_problems": len(problems),
            "config": dataclasses.asdict(cfg), "jax": jax.__version__}


# ---- run ----------------------------------------------------------------------------------------

def run(args) -> int:
    paths, cfg = resolve(args)
    _validate(args, paths)
    import jax
    from tqdm import tqdm

    from coderl_jax.checkpoint_io import model_tokenizer
    from coderl_jax.commands.generate import read_done_rows
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.eval_recipes import git_commit
    from coderl_jax.files import atomic_write, read_jsonl, write_json, write_jsonl
    from coderl_jax.inference.critical_sampling import CriticalSampler, summarize_rows
    from coderl_jax.partitioning import make_mesh
    from coderl_jax.train.distributed import gather_objects

    if args.compare:
        return run_compare(args, paths, cfg)
    t0 = time.perf_counter()
    problems = load_problems(paths["problems"], paths["split"])
    if args.limit:
        problems = problems[: args.limit]
    if not problems:
        raise UserError(f"no problems in {paths['problems']}")
    by_id = problems_by_id(problems)
    initial = None
    if paths["samples"]:
        initial = {}
        for row in read_jsonl(paths["samples"]):
            if str(row.get("problem_id")) in by_id:
                initial.setdefault(str(row["problem_id"]), []).append(row)
        absent = [p.problem_id for p in problems if p.problem_id not in initial]
        if absent:
            raise UserError(f"{paths['samples']} has no programs for problem {absent[0]} "
                            f"({len(absent)} problems missing)")

    out = storage.as_path(args.out)
    part, part_settings = partial_path(out), settings_path(partial_path(out))
    record = settings_record(args, paths, cfg, problems)
    # several processes: every one plans the same rounds (it holds every row); process 0 alone
    # reads the partial file and writes the files, and tells the others what it resumed from
    lead = jax.process_index() == 0
    done, error = [], None
    if lead and args.resume and part.is_file():
        old = (json.loads(part_settings.read_text(encoding="utf-8"))
               if part_settings.is_file() else record)
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            error = (f"{part} was made with other settings ({', '.join(diff)}); "
                     "rerun without --resume to start over")
        else:
            done = [json.loads(line) for line in read_done_rows(part)]
    done, error = gather_objects([done, error])[0]
    if error:
        raise UserError(error)
    tokenizer = model_tokenizer(paths["tokenizer"], paths["checkpoint"])
    mesh = make_mesh()
    models = _load_models(paths, mesh)
    sampler = CriticalSampler(models, tokenizer, cfg, mesh=mesh)

    kept = sampler._resume_state(problems, done)
    if lead:
        storage.make_dirs(out.parent)
        write_json(part_settings, record)
        with atomic_write(part) as f:  # exactly the complete rounds kept
            for rows in kept.values():
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        if kept:
            print(f"resuming: {sum(len(v) for v in kept.values())} programs of {len(kept)} "
                  f"problems already in {part.name}", file=sys.stderr)
    total = len(problems) * cfg.total_per_problem
    with (storage.open_append(part) if lead else contextlib.nullcontext()) as f, \
            tqdm(total=total, desc="critical-sampling", unit="prog", file=sys.stderr,
                 disable=None if lead else True) as bar:
        def on_rows(rows):
            if f is None:
                return
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()

        rows = sampler.run(problems, initial_rows=initial,
                           done_rows=[r for v in kept.values() for r in v], on_rows=on_rows,
                           progress=bar.update)
    summary = summarize_rows(rows)
    origins: dict[str, int] = {}
    for r in rows:
        origins[r["origin"]] = origins.get(r["origin"], 0) + 1
    if not lead:
        return 0
    write_jsonl(out, rows)
    write_json(settings_path(out), dict(record, git_commit=git_commit(), origins=origins,
                                        num_programs=len(rows),
                                        seconds=round(time.perf_counter() - t0, 3),
                                        summary=summary))
    part.unlink(missing_ok=True)
    part_settings.unlink(missing_ok=True)
    made = ", ".join(f"{k} {v}" for k, v in origins.items())
    print(f"wrote {len(rows)} programs to {out} ({made}); settings in "
          f"{settings_path(out).name}", file=sys.stderr)
    print(json.dumps({k: summary[k] for k in summary if "@" in k}))
    return 0


def run_compare(args, paths, cfg) -> int:
    """`--compare`: plain vs critical sampling on the same problems and budget."""
    import jax

    from coderl_jax.checkpoint_io import model_tokenizer
    from coderl_jax.data.sources import load_problems
    from coderl_jax.eval_recipes import git_commit
    from coderl_jax.files import write_json, write_jsonl
    from coderl_jax.inference.critical_sampling import compare_plain_vs_critical
    from coderl_jax.partitioning import make_mesh

    if args.resume or paths["samples"]:
        raise UserError("--compare samples both sets itself; drop --resume / --samples")
    problems = load_problems(paths["problems"], paths["split"])
    if args.limit:
        problems = problems[: args.limit]
    if not problems:
        raise UserError(f"no problems in {paths['problems']}")
    tokenizer = model_tokenizer(paths["tokenizer"], paths["checkpoint"])
    mesh = make_mesh()
    models = _load_models(paths, mesh)
    print(f"comparing on {len(problems)} problems, {cfg.total_per_problem} programs each way",
          file=sys.stderr)
    result = compare_plain_vs_critical(models, tokenizer, problems, cfg, mesh=mesh,
                                       return_rows=True)
    rows = result.pop("rows")
    if jax.process_index() != 0:  # every process holds every row; process 0 writes them
        return 0
    out = storage.as_path(args.out)
    stem = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    write_jsonl(out.with_name(stem + ".plain.jsonl"), rows["plain"])
    write_jsonl(out.with_name(stem + ".critical.jsonl"), rows["critical"])
    record = dict(settings_record(args, paths, cfg, problems), git_commit=git_commit(),
                  **result)
    record["command"] = "critical-sampling --compare"
    write_json(out, record)
    keys = [k for k in result["plain"] if "@" in k]
    print(json.dumps({"budget": result["budget"],
                      "plain": {k: result["plain"][k] for k in keys},
                      "critical": {k: result["critical"][k] for k in keys}}))
    return 0


def run_mine(args) -> int:
    from coderl_jax.data.sources import load_problems, problems_by_id
    from coderl_jax.files import read_jsonl
    from coderl_jax.inference.repair import RepairFormat, mine_repair_pairs, write_repair_dataset

    if args.no_samples and args.no_solutions:
        raise UserError("--no-samples and --no-solutions leave nothing to pair with")
    if args.max_pairs_per_problem is not None and args.max_pairs_per_problem < 1:
        raise UserError("--max-pairs-per-problem must be >= 1")
    for flag, v in (("--max-program-chars", args.max_program_chars),
                    ("--max-error-chars", args.max_error_chars)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1")
    by_id = problems_by_id(load_problems(args.problems, args.split))
    rows = read_jsonl(args.results)
    pairs = mine_repair_pairs(by_id, rows, use_samples=not args.no_samples,
                              use_solutions=not args.no_solutions,
                              max_pairs_per_problem=args.max_pairs_per_problem, seed=args.seed,
                              prefix="example_" if args.outcome == "example" else "")
    if not pairs:
        raise UserError(f"no repair pairs in {args.results}: no problem has both a failing and a "
                        "passing program (or reference solution)")
    info = write_repair_dataset(pairs, by_id, args.out,
                                RepairFormat(args.max_program_chars, args.max_error_chars))
    if not info["written"]:
        raise UserError("every pair was skipped (their prompts cannot be written as APPS "
                        "folders, e.g. HumanEval)")
    print(json.dumps({"pairs": info["written"], "skipped": info["skipped"],
                      "problems": len({p.problem_id for p in pairs}), "path": info["path"]}))
    return 0

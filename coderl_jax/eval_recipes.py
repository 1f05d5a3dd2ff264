"""Evaluation recipes: a config (configs/eval_*.py) turned into the exact `coderl` command
sequence, run step by step, with the settings and metrics written beside the results.

    python configs/eval_apps.py --checkpoint CKPT --problems APPS/test --workdir W [--dry-run]
        [--critic CRITIC] [--tokenizer TOK] [--config.num_samples=200 ...]

Methods (`cfg.method`):
- "sample": `coderl generate` -> `coderl run-tests` (hidden tests) [-> `coderl run-tests
  --example-tests` when n@k is wanted] -> `coderl evaluate --json` (stdout saved as
  W/metrics.json);
- "critical_sampling": `coderl critical-sampling` (rows already hold hidden and example results
  and critic scores) -> `coderl evaluate --json`.
W/settings.json records the config, every command exactly as run, each step's status and
seconds, the git commit and package versions, and (at the end) the metrics. A step whose output
already exists is skipped, so an interrupted recipe continues where it stopped (generate and
critical-sampling also resume their own partial output); a workdir made with other settings is
refused. `--dry-run` prints the commands without running them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import ml_collections

from coderl_jax import paths as storage
from coderl_jax.config import apply_override, split_overrides
from coderl_jax.errors import UserError
from coderl_jax.files import atomic_write, write_json

METHODS = ("sample", "critical_sampling")
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a recipe: its argv after `coderl`, the file it makes, and whether its
    stdout is that file (evaluate --json)."""

    name: str
    argv: tuple[str, ...]
    output: str
    stdout_to_output: bool = False


def _split_args(cfg) -> list[str]:
    return ["--split", cfg.split] if cfg.get("split") else []


def _ks(values) -> str:
    return ",".join(str(int(v)) for v in values)


def build_steps(cfg: ml_collections.ConfigDict, paths: dict) -> list[Step]:
    """The recipe's commands for `cfg` with `paths` (checkpoint, critic, tokenizer, problems,
    workdir, repair_checkpoint)."""
    if cfg.method not in METHODS:
        raise UserError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    w = paths["workdir"].rstrip("/")
    src = ["--problems", paths["problems"], *_split_args(cfg)]
    tok = ["--tokenizer", paths["tokenizer"]] if paths.get("tokenizer") else []
    limit = ["--limit", str(cfg.limit)] if cfg.get("limit") else []
    evaluate = ["evaluate", "--k", _ks(cfg.ks), "--problems", paths["problems"], "--json"]
    if cfg.method == "critical_sampling":
        if not paths.get("critic"):
            raise UserError("the critical_sampling method needs --critic CRITIC")
        repair = ["--repair-checkpoint", paths["repair_checkpoint"]] \
            if paths.get("repair_checkpoint") else []
        overrides = [f"--config.{k}={v}" for k, v in sorted(cfg.cs_overrides.items())]
        cs = ["critical-sampling", "--config", cfg.cs_config, "--checkpoint", paths["checkpoint"],
              "--critic", paths["critic"], *tok, *src, "--out", f"{w}/critical.jsonl", *repair,
              *overrides, *limit, "--resume"]
        ev = ["evaluate", "--results", f"{w}/critical.jsonl", "--k", _ks(cfg.cs_ks),
              *evaluate[3:]]
        if cfg.ns:
            ev[ev.index("--json"):ev.index("--json")] = ["--n", _ks(cfg.ns)]
        return [Step("critical-sampling", tuple(cs), f"{w}/critical.jsonl"),
                Step("evaluate", tuple(ev), f"{w}/metrics.json", stdout_to_output=True)]
    gen = ["generate", "--checkpoint", paths["checkpoint"], *tok, *src,
           "--out", f"{w}/samples.jsonl", "--num-samples", str(cfg.num_samples),
           "--temperature", str(cfg.temperature), "--top-p", str(cfg.top_p),
           "--top-k", str(cfg.top_k), *(["--prompt-style", cfg.prompt_style]
                                         if cfg.prompt_style != "train" else []),
           "--max-new-tokens", str(cfg.max_new_tokens), "--batch-size", str(cfg.batch_size),
           "--seed", str(cfg.seed), *limit, "--resume"]
    run = ["run-tests", *src, "--programs", f"{w}/samples.jsonl", "--workers", str(cfg.workers),
           "--timeout", str(cfg.timeout)]
    steps = [Step("generate", tuple(gen), f"{w}/samples.jsonl"),
             Step("run-tests", (*run, "--out", f"{w}/results.jsonl"), f"{w}/results.jsonl")]
    ev = ["evaluate", "--results", f"{w}/results.jsonl", *evaluate[1:]]
    if cfg.example_tests:
        steps.append(Step("run-tests --example-tests",
                          (*run, "--out", f"{w}/example_results.jsonl", "--example-tests"),
                          f"{w}/example_results.jsonl"))
        ev[ev.index("--json"):ev.index("--json")] = [
            "--example-results", f"{w}/example_results.jsonl", "--n", _ks(cfg.ns),
            "--rank-by", "logprob"]
    steps.append(Step("evaluate", tuple(ev), f"{w}/metrics.json", stdout_to_output=True))
    return steps


_SAFE = re.compile(r"^[\w@%+=:,./$-]+$")


def format_command(step: Step) -> str:
    """`coderl ARGS` as a shell line; `$VAR` placeholders stay unquoted."""
    words = ["coderl", *(a if _SAFE.match(a) else shlex.quote(a) for a in step.argv)]
    line = " ".join(words)
    return line + (f" > {step.output}" if step.stdout_to_output else "")


def _versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("jax", "flax", "numpy", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    """The checkout's HEAD commit, or None outside a git checkout."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                           cwd=REPO, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


def run_recipe(cfg: ml_collections.ConfigDict, paths: dict, *, dry_run: bool = False,
               out=None, env: dict | None = None) -> int:
    """Run (or print) the recipe's steps; returns the first failing step's status, else 0."""
    out = out or sys.stdout
    steps = build_steps(cfg, paths)
    if dry_run:
        for s in steps:
            print(format_command(s), file=out)
        return 0
    workdir = storage.make_dirs(paths["workdir"])
    settings_file = workdir / "settings.json"
    identity = json.loads(json.dumps({"recipe": cfg.name, "config": cfg.to_dict(),
                                      "paths": paths,
                                      "commands": [format_command(s) for s in steps]}))
    if settings_file.is_file():
        old = json.loads(settings_file.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in identity} != identity:
            raise UserError(f"{workdir} holds a run of other settings ({settings_file}); use "
                            "another --workdir or delete it")
    record = dict(identity, git_commit=git_commit(), versions=_versions(), steps=[],
                  started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json(settings_file, record)
    for s in steps:
        entry = {"name": s.name, "command": format_command(s)}
        if storage.as_path(s.output).exists():
            entry["status"] = "skipped (output exists)"
            record["steps"].append(entry)
            write_json(settings_file, record)
            continue
        print(f"[{cfg.name}] {format_command(s)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "coderl_jax", *s.argv]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if s.stdout_to_output else None,
                              text=True, env=env)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        entry["status"] = proc.returncode
        record["steps"].append(entry)
        if proc.returncode == 0 and s.stdout_to_output:
            with atomic_write(s.output) as f:
                f.write(proc.stdout)
        write_json(settings_file, record)
        if proc.returncode != 0:
            print(f"[{cfg.name}] step '{s.name}' failed with status {proc.returncode}",
                  file=sys.stderr)
            return proc.returncode
    metrics = json.loads(storage.as_path(steps[-1].output).read_text(encoding="utf-8"))
    record["metrics"] = {k: v for k, v in metrics.items() if "@" in k or k.startswith("num_")}
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(settings_file, record)
    print(json.dumps(record["metrics"]), file=out)
    return 0


def main(get_config: Callable[[], ml_collections.ConfigDict], argv: list[str] | None = None
         ) -> int:
    """Command line of a recipe config file (see the module docstring)."""
    cfg = get_config()
    doc = (getattr(sys.modules.get(get_config.__module__), "__doc__", None) or "").strip()
    parser = argparse.ArgumentParser(prog=f"python configs/{cfg.name}.py",
                                     description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--checkpoint", required=True, help="actor checkpoint")
    parser.add_argument("--critic", default=None, help="critic checkpoint (critical_sampling)")
    parser.add_argument("--repair-checkpoint", default=None,
                        help="repair model (critical_sampling; default: the actor)")
    parser.add_argument("--tokenizer", default=None, help="CodeT5 tokenizer folder")
    parser.add_argument("--problems", default=None,
                        help=f"problem source (default: {cfg.problems})")
    parser.add_argument("--workdir", required=True, help="results, settings.json, metrics.json")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    try:
        rest, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        parser.error(str(e))
    args = parser.parse_args(rest)
    try:
        for item in overrides:
            apply_override(cfg, item)
        paths = {"checkpoint": args.checkpoint, "critic": args.critic,
                 "repair_checkpoint": args.repair_checkpoint, "tokenizer": args.tokenizer,
                 "problems": args.problems or cfg.problems, "workdir": args.workdir}
        return run_recipe(cfg, paths, dry_run=args.dry_run)
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


def recipe_config(name: str, **values) -> ml_collections.ConfigDict:
    """A recipe ConfigDict with every field (defaults: CodeRL's sampling settings, `generate.py`
    run with transformers 4.16: temperature 0.6, top-p 0.95, top-k 50 -- that version's silent
    default -- and max_length=512 counting the decoder start token, so 511 new tokens)."""
    base = dict(name=name, method="sample", problems="", split="", limit=0, num_samples=1,
                temperature=0.6, top_p=0.95, top_k=50, max_new_tokens=511, batch_size=8, seed=0,
                prompt_style="train",
                workers=8, timeout=4.0, ks=(1,), ns=(), example_tests=False,
                cs_config="configs/critical_sampling_apps.py", cs_ks=(1, 5, 100),
                cs_overrides={})
    unknown = set(values) - set(base)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {sorted(unknown)}")
    base.update(values)
    return ml_collections.ConfigDict(base)

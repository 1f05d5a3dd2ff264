"""The demo (SPEC §8): every CodeRL stage on the bundled demo problems with a small model.

With `vocabulary = "corpus"` the models' vocabulary is CodeT5's restricted to the training
problems' tokens (`<workdir>/tokenizer`, carried by every checkpoint and the export), so the
compute goes into the layers rather than a 32100-row embedding and LM head.

warm-up → evaluate → critic data (sample + execute) → critic → offline RL (critic-scored
returns) → evaluate → online RL → evaluate → plain vs critical sampling → export to PyTorch,
all in one process (so compiled functions are shared), every stage under `<workdir>/<stage>`.
Each actor is measured the same way: `eval.num_samples` programs per held-out problem, run on
the hidden tests, pass@1 and pass@5 by the unbiased estimator. `report.py` turns the result
into report.json, report.md and plots. Numbers depend only on the config and its seed.
"""
from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from coderl_jax import checkpoint_io, convert, paths
from coderl_jax.config import configs_dir
from coderl_jax.data.demo import load_demo
from coderl_jax.data.pipeline import PipelineConfig, make_batches, reindent_solution
from coderl_jax.data.prompts import build_prompt
from coderl_jax.data.sources import problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.evaluation import pass_at_k
from coderl_jax.execution.pool import ExecutionPool
from coderl_jax.files import write_json, write_jsonl
from coderl_jax.inference import critical_sampling as cs
from coderl_jax.inference.decoding import SamplingConfig
from coderl_jax.models import t5
from coderl_jax.paths import PathLike
from coderl_jax.report import write_report
from coderl_jax.rl.critic_train import read_eval
from coderl_jax.rl.online import read_stats
from coderl_jax.rl.program_dataset import execute_rows, generate_critic_data, sample_rows
from coderl_jax.stats import auroc, brier, metric_intervals, paired_difference
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.tokenizer_subset import write_subset
from coderl_jax.train.run import run_config, train_stage

STAGE_DIRS = ("tokenizer", "warmup", "critic_data", "critic", "offline_rl", "online_rl", "eval",
              "critical_sampling", "export")
STEPS = ("warm-up", "evaluate warm-up", "critic data", "critic", "offline RL",
         "evaluate offline RL", "online RL", "evaluate online RL", "critical sampling", "export")
OUTCOME_NAMES = {-2: "compile error", -1: "runtime error", 0: "failed tests", 1: "passed"}
KS = (1, 5)
PASS_KEYS = tuple(f"heldout_pass@{k}" for k in KS)
CI_LEVEL, CI_RESAMPLES = 0.90, 2000  # bootstrap intervals over held-out problems, seeded
DIFFERENCES = {"offline_rl_minus_warmup": ("offline_rl", "warmup"),  # name: (B, A) of B - A
               "online_rl_minus_warmup": ("online_rl", "warmup"),
               "critical_minus_plain": ("critical_sampling", "plain_same_budget")}


def default_config_path() -> Path:
    """The shipped configs/demo.py (coderl_jax.configs.demo when installed)."""
    return configs_dir() / "demo.py"


class Progress:
    """One line per demo step on stderr: `[demo 3/10] critic data ... done in 12.3 s`."""

    def __init__(self, names: Sequence[str], stream=sys.stderr):
        self.names, self.stream, self.index = list(names), stream, 0
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.index += 1
        print(f"[demo {self.index}/{len(self.names)}] {name} ...", file=self.stream, flush=True)
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - t0
        print(f"[demo {self.index}/{len(self.names)}] {name} done in {self.seconds[name]:.1f} s",
              file=self.stream, flush=True)
        return out


# ------------------------------------------------------------------------------ measurement


def outcome_mix(rows: Sequence[dict]) -> dict[str, float]:
    """Fraction of rows per outcome (SPEC §4 classes)."""
    counts = collections.Counter(int(r["result"]) for r in rows)
    n = max(len(rows), 1)
    return {name: counts.get(code, 0) / n for code, name in OUTCOME_NAMES.items()}


def per_problem_pass(rows: Sequence[dict], ks: Sequence[int] = KS) -> dict[str, dict]:
    """Each problem's unbiased pass@k of the rows' hidden-test results:
    {problem_id: {"heldout_pass@k": ...}}, problems in row order."""
    by_problem: dict[str, list[bool]] = collections.defaultdict(list)
    for r in rows:
        by_problem[r["problem_id"]].append(int(r["result"]) == 1)
    for k in ks:
        if any(len(v) < k for v in by_problem.values()):
            raise UserError(f"pass@{k} needs at least {k} programs per problem")
    return {pid: {f"heldout_pass@{k}": pass_at_k(len(v), sum(v), k) for k in ks}
            for pid, v in by_problem.items()}


def pass_at(rows: Sequence[dict], ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean over problems of the unbiased pass@k of the rows' hidden-test results."""
    per = list(per_problem_pass(rows, ks).values())
    return {f"heldout_pass@{k}": float(np.mean([e[f"heldout_pass@{k}"] for e in per]))
            for k in ks}


def pass_intervals(per_problem: dict[str, dict], seed: int) -> dict:
    """`heldout_pass@k_ci` ({"low", "high"}) of each k: bootstrap over problems (stats.py)."""
    return metric_intervals(list(per_problem.values()), PASS_KEYS, CI_LEVEL, CI_RESAMPLES, seed)


def pass_differences(per_problem: dict[str, dict[str, dict]], seed: int) -> dict:
    """Each of DIFFERENCES' `B - A` of held-out pass@k with its paired bootstrap interval
    (the same resampled problems for both stages)."""
    out = {}
    for name, (b, a) in DIFFERENCES.items():
        ids = sorted(per_problem[a])
        if sorted(per_problem[b]) != ids:
            raise UserError(f"{b} and {a} were measured on different problems")
        out[name] = paired_difference([per_problem[a][i] for i in ids],
                                      [per_problem[b][i] for i in ids], PASS_KEYS, CI_LEVEL,
                                      CI_RESAMPLES, seed)
    return out


def evaluate_actor(model_config, params, problems, tokenizer, ev, seed: int, pool,
                   progress: bool = True) -> tuple[dict, list[dict]]:
    """Sample `ev.num_samples` programs per problem, run the hidden tests, measure."""
    t0 = time.perf_counter()
    rows = sample_rows(model_config, params, problems, tokenizer, num_samples=ev.num_samples,
                       sampling=SamplingConfig(temperature=ev.temperature, top_p=ev.top_p,
                                               top_k=ev.top_k),
                       batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                       max_source_len=ev.max_source_len, seed=seed, progress=progress)
    t1 = time.perf_counter()
    rows = execute_rows(pool, problems_by_id(list(problems)), rows, "execute", progress)
    t2 = time.perf_counter()
    tokens = sum(len(r["output_ids"]) for r in rows)
    metrics = {**pass_at(rows), "outcomes": outcome_mix(rows), "programs": len(rows),
               "sampling": {"seconds": t1 - t0, "programs_per_s": len(rows) / (t1 - t0),
                            "tokens_per_s": tokens / (t1 - t0)},
               "execution": {"seconds": t2 - t1, "programs_per_s": len(rows) / (t2 - t1)}}
    return metrics, rows


def training_summary(result, workdir: PathLike) -> dict:
    """Steps, time, tokens/s and the last logged metrics of a finished training stage."""
    last = {k: float(v) for k, v in result.last_metrics.items()
            if isinstance(v, (int, float, np.floating, np.integer))}
    return {"steps": int(result.steps_run), "seconds": float(result.seconds),
            "tokens_per_s": float(result.tokens_per_s), "last": last,
            "metrics_file": str(workdir / "metrics.jsonl")}


# ------------------------------------------------------------------------------------ export


def torch_logit_diff(hf_dir: PathLike, model_config, params, problems, tokenizer,
                     max_source_len: int, max_target_len: int) -> float | None:
    """Max |logit difference| between our model and the exported HF model in PyTorch on a few
    held-out prompts with their reference programs; None when torch/transformers are absent."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    import jax.numpy as jnp

    cfg = PipelineConfig(batch_size=4, max_source_len=max_source_len,
                         max_target_len=max_target_len, shuffle=False, num_epochs=1)
    batch = next(iter(make_batches("warmup", tokenizer, cfg, problems=list(problems)[:4])))
    dec_in = np.array(t5.shift_right(jnp.asarray(batch["targets"]), 0))  # writable for torch
    ours = np.asarray(t5.T5(model_config).apply(
        {"params": params}, batch["encoder_ids"], batch["encoder_mask"], dec_in,
        batch["target_mask"]))  # [b, t, vocab]
    with paths.local_copy(hf_dir) as local:
        hf = transformers.T5ForConditionalGeneration.from_pretrained(str(local)).eval()
    with torch.no_grad():
        theirs = hf(input_ids=torch.as_tensor(batch["encoder_ids"], dtype=torch.long),
                    attention_mask=torch.as_tensor(batch["encoder_mask"], dtype=torch.long),
                    decoder_input_ids=torch.as_tensor(dec_in, dtype=torch.long),
                    decoder_attention_mask=torch.as_tensor(batch["target_mask"],
                                                           dtype=torch.long)).logits.numpy()
    real = batch["target_mask"].astype(bool)  # compare at real target positions
    return float(np.abs(ours - theirs)[real].max())


# -------------------------------------------------------------------------------------- run


def corpus_texts(problems) -> list[str]:
    """What the demo's models read and write: each problem's prompt and reference programs (as
    written and as the warm-up reindents them)."""
    texts = []
    for p in problems:
        texts.append(build_prompt(p))
        for code in p.solutions:
            texts += [code, reindent_solution(code)]
    return texts


def stage_config(cfg: ml_collections.ConfigDict, name: str, seed: int, tokenizer: str,
                 **fields) -> Any:
    """The typed RunConfig of one training stage with the demo's seed and paths filled in."""
    stage = ml_collections.ConfigDict(cfg[name].to_dict())
    stage.train.seed = seed
    stage.data.shuffle_seed = seed
    stage.data.tokenizer = tokenizer
    for key, value in fields.items():
        section, field = key.split("__")
        stage[section][field] = value
    return run_config(stage)


def run_demo(cfg: ml_collections.ConfigDict, workdir: PathLike, progress: bool = True
             ) -> dict:
    """Run every stage in `workdir` (its demo folders are replaced) and write the report."""
    t_start = time.perf_counter()
    workdir = paths.absolute(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file, not a folder")
    tokenizer = load_tokenizer(cfg.tokenizer or None)  # fail fast, before any folder is touched
    if cfg.vocabulary not in ("corpus", "full"):
        raise UserError(f"vocabulary must be corpus or full, got {cfg.vocabulary!r}")
    paths.make_dirs(workdir)
    for name in STAGE_DIRS:
        paths.rmtree(workdir / name)
    seed = int(cfg.seed)
    scale = int(cfg.train_scale)
    train_problems, heldout = load_demo("train", train_scale=scale), load_demo("heldout")
    if cfg.vocabulary == "corpus":  # the training problems' tokens only; the model carries it
        tokenizer = load_tokenizer(write_subset(tokenizer, corpus_texts(train_problems),
                                                workdir / "tokenizer"))
    tok_path = str(tokenizer.path or "")
    ev = ml_collections.ConfigDict(cfg.eval.to_dict())
    ev.max_source_len = int(cfg.warmup.data.max_source_len)
    if ev.limit:
        heldout = heldout[:ev.limit]
    steps = Progress(STEPS)
    report: dict[str, Any] = {"seed": seed, "stages": {}, "config": cfg.to_dict(),
                              "problems": {"train": len(train_problems),
                                           "heldout": len(heldout)},
                              "vocabulary": {"kind": cfg.vocabulary,
                                             "size": tokenizer.vocab_size}}
    stages = report["stages"]
    per_problem: dict[str, dict] = {}  # stage -> its per-problem pass@k, for the differences

    def train(name: str, **fields):
        run = stage_config(cfg, name, seed, tok_path, data__problems=f"demo:{scale}", **fields)
        return training_summary(train_stage(run, workdir / name, progress=progress),
                                workdir / name)

    def load_actor(name: str):
        params, model_cfg, _ = checkpoint_io.load_model(workdir / name / "model")
        return model_cfg, params

    with ExecutionPool(workers=int(ev.workers), timeout=float(ev.timeout)) as pool:
        def evaluate(name: str) -> None:
            model_cfg, params = load_actor(name)
            metrics, rows = evaluate_actor(model_cfg, params, heldout, tokenizer, ev, seed,
                                           pool, progress)
            write_jsonl(workdir / "eval" / f"{name}.jsonl", rows)
            per_problem[name] = per_problem_pass(rows)
            stages[name].update({**metrics, **pass_intervals(per_problem[name], seed)})

        stages["warmup"] = {"training": steps.run("warm-up", lambda: train(
            "warmup", model__vocab_size=tokenizer.vocab_size))}
        steps.run("evaluate warm-up", lambda: evaluate("warmup"))

        cd = cfg.critic_data
        report["critic_data"] = steps.run("critic data", lambda: generate_critic_data(
            load_actor("warmup"), train_problems[:cd.limit] if cd.limit else train_problems,
            workdir / "critic_data", tokenizer=tokenizer,
            num_samples=cd.num_samples, temperature=cd.temperature, top_p=cd.top_p,
            top_k=cd.top_k,
            max_new_tokens=cd.max_new_tokens, max_source_len=ev.max_source_len,
            batch_size=cd.batch_size, seed=seed, workers=cd.workers, timeout=cd.timeout,
            progress=progress))

        critic_training = steps.run("critic", lambda: train(
            "critic", data__programs=str(workdir / "critic_data"),
            train__init_checkpoint=str(workdir / "warmup" / "model")))
        critic_eval = read_eval(workdir / "critic")
        if critic_eval is None:
            raise UserError(f"the critic stage wrote no held-out evaluation under "
                            f"{workdir / 'critic'}")
        report["critic"] = {**{k: critic_eval[k] for k in (
            "accuracy", "majority_baseline", "majority_class", "num_programs",
            "per_class_accuracy", "support", "auroc", "brier", "brier_baseline")},
            "training": critic_training}
        critic_model = str(workdir / "critic" / "model")

        stages["offline_rl"] = {"training": steps.run("offline RL", lambda: train(
            "offline_rl", data__programs=str(workdir / "critic_data"),
            train__init_checkpoint=str(workdir / "warmup" / "model"),
            rl__critic_checkpoint=critic_model))}
        steps.run("evaluate offline RL", lambda: evaluate("offline_rl"))

        stages["online_rl"] = {"training": steps.run("online RL", lambda: train(
            "online_rl", train__init_checkpoint=str(workdir / "offline_rl" / "model"),
            rl__critic_checkpoint=critic_model))}
        stages["online_rl"]["online"] = read_stats(workdir / "online_rl")
        steps.run("evaluate online RL", lambda: evaluate("online_rl"))

    c = cfg.critical_sampling
    cs_cfg = cs.CriticalSamplingConfig(
        num_samples=c.num_samples, rounds=c.rounds, top_m=c.top_m, temperature=c.temperature,
        top_p=c.top_p, top_k=c.top_k, max_new_tokens=c.max_new_tokens,
        max_source_len=ev.max_source_len, max_target_len=c.max_new_tokens,
        batch_size=c.batch_size, seed=seed,
        workers=int(ev.workers), timeout=float(ev.timeout))

    def critical() -> dict:
        models = cs.load_models(str(workdir / "online_rl" / "model"), critic_model)
        out = cs.compare_plain_vs_critical(models, tokenizer, heldout, cs_cfg, ks=KS,
                                           return_rows=True)
        rows = out.pop("rows")
        for kind in ("plain", "critical"):
            write_jsonl(workdir / "critical_sampling" / f"{kind}.jsonl", rows[kind])
        write_json(workdir / "critical_sampling" / "compare.json", out)
        for name, kind in (("critical_sampling", "critical"), ("plain_same_budget", "plain")):
            per_problem[name] = per_problem_pass(rows[kind])
        return {**pass_at(rows["critical"]), **pass_intervals(per_problem["critical_sampling"],
                                                              seed),
                "outcomes": outcome_mix(rows["critical"]),
                "budget_per_problem": out["budget"], "origins": out["origins"],
                "n@k": {k: v for k, v in out["critical"].items()
                        if "@" in k and not k.startswith("pass@")},  # "1@5": ranked by critic
                "seconds": out["seconds"]["critical"],
                "plain_same_budget": {**pass_at(rows["plain"]),
                                      **pass_intervals(per_problem["plain_same_budget"], seed),
                                      "outcomes": outcome_mix(rows["plain"]),
                                      "seconds": out["seconds"]["plain"]},
                "calibration_rows": [(float(r["critic_score"]), int(r["result"]) == 1)
                                     for r in rows["plain"] if r.get("critic_score") is not None]}

    stages["critical_sampling"] = steps.run("critical sampling", critical)
    report["critic"]["calibration"] = calibration(
        stages["critical_sampling"].pop("calibration_rows"))
    report["differences"] = pass_differences(per_problem, seed)
    report["ci"] = {"level": CI_LEVEL, "resamples": CI_RESAMPLES, "seed": seed,
                    "method": "percentile bootstrap over held-out problems (paired for "
                              "differences)"}

    def export() -> dict:
        out = workdir / "export"
        convert.to_hf(workdir / "online_rl" / "model", out / "actor_hf")
        convert.to_hf(critic_model, out / "critic_hf")
        model_cfg, params = load_actor("online_rl")
        diff = torch_logit_diff(out / "actor_hf", model_cfg, params, heldout, tokenizer,
                                ev.max_source_len, int(cfg.warmup.data.max_target_len))
        return {"path": str(out / "actor_hf"), "critic_path": str(out / "critic_hf"),
                "max_abs_logit_diff": diff}

    report["export"] = steps.run("export", export)
    report["step_seconds"] = steps.seconds
    report["seconds"] = time.perf_counter() - t_start
    write_report(report, workdir)
    return report


def calibration(pairs: Sequence[tuple[float, bool]], bins: int = 5) -> dict:
    """Reliability table of the critic's P(passed) on held-out programs it never trained on:
    per equal-width bin, the mean predicted probability and the observed pass rate; and the
    Brier score and AUROC of P(passed) on them (None when undefined)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    scores = np.asarray([p for p, _ in pairs], np.float64)
    passed = np.asarray([ok for _, ok in pairs], np.float64)
    for i in range(bins):
        hi_ok = scores <= edges[i + 1] if i == bins - 1 else scores < edges[i + 1]
        sel = (scores >= edges[i]) & hi_ok
        table.append({"low": float(edges[i]), "high": float(edges[i + 1]),
                      "programs": int(sel.sum()),
                      "mean_predicted": float(scores[sel].mean()) if sel.any() else None,
                      "pass_rate": float(passed[sel].mean()) if sel.any() else None})
    return {"programs": len(pairs), "bins": table, "brier": brier(scores, passed > 0),
            "auroc": auroc(scores, passed > 0)}

"""The critic stage's batch source: executed programs plus ground truth, and held-out accuracy.

As CodeRL's critic dataset (`datasets/apps_dataset.py`, tuning_mode='critic'): every sampled
program of `data.programs` with its outcome class, plus every ground-truth solution of those
problems counted as passed (`get_gt_info() -> (1, None)`; solutions reindented as CodeRL does).
A held-out part (`rl.eval_programs`, else `rl.eval_fraction` of the programs' problems, chosen by
a seeded hash, with their ground truth as passed programs) is kept out of training; after the
last step (and every `rl.eval_every` steps) the
critic classifies it and the run reports accuracy overall and per class against the majority-class
baseline (the training data's most common class) and the AUROC and Brier score of its P(passed),
printed and logged to metrics.jsonl / TensorBoard (`heldout/...`) and
`<workdir>/critic_eval.json`.
"""
from __future__ import annotations

import collections
import json
import math
import zlib
from typing import Any, Sequence

import numpy as np

from coderl_jax import paths
from coderl_jax.config import RLConfig
from coderl_jax.data import pipeline
from coderl_jax.data.pipeline import reindent_solution
from coderl_jax.data.sources import load_problems, problems_by_id
from coderl_jax.errors import UserError
from coderl_jax.files import write_json
from coderl_jax.paths import PathLike
from coderl_jax.rl.modes import ModeSource
from coderl_jax.rl.programs import load_program_rows, stage_inputs
from coderl_jax.rl.rewards import CLASS_NAMES, outcome_class
from coderl_jax.rl.scoring import CriticScorer, score_rows
from coderl_jax.stats import auroc, brier
from coderl_jax.train.metrics import summary_writer
from coderl_jax.train.stage_context import StageContext

EVAL_FILE = "critic_eval.json"


def class_names(num_classes: int) -> tuple[str, ...]:
    return CLASS_NAMES if num_classes == 4 else ("not passed", "passed")


def classification_report(labels: Sequence[int], preds: Sequence[int], num_classes: int,
                          majority_class: int | None = None,
                          p_passed: Sequence[float] | None = None) -> dict:
    """Accuracy, per-class accuracy (recall) and the majority-class baseline's accuracy; with
    `p_passed` (the critic's P(passed) per program) also the AUROC and Brier score of P(passed)
    for "passed" (coderl_jax/stats.py) and the Brier score of always predicting the held-out pass
    rate (`brier_baseline`; AUROC's baseline is 0.5).

    `majority_class`: the class the baseline always predicts (the training majority); default:
    the most common class of `labels` itself."""
    labels = np.asarray(labels, np.int64)
    preds = np.asarray(preds, np.int64)
    if labels.size == 0:
        raise UserError("no held-out programs to evaluate the critic on")
    counts = np.bincount(labels, minlength=num_classes)
    if majority_class is None:
        majority_class = int(np.argmax(counts))
    names = class_names(num_classes)
    per_class, support = {}, {}
    for c in range(num_classes):
        sel = labels == c
        support[names[c]] = int(sel.sum())
        per_class[names[c]] = float((preds[sel] == c).mean()) if sel.any() else None
    report = {"accuracy": float((preds == labels).mean()),
              "majority_baseline": float((labels == majority_class).mean()),
              "majority_class": names[majority_class], "num_programs": int(labels.size),
              "per_class_accuracy": per_class, "support": support,
              "predicted": {names[c]: int((preds == c).sum()) for c in range(num_classes)}}
    if p_passed is not None:
        passed = labels == num_classes - 1  # the last class is "passed" (4-class and binary)
        rate = float(passed.mean())
        report.update(auroc=auroc(p_passed, passed), brier=brier(p_passed, passed),
                      brier_baseline=rate * (1.0 - rate))
    return report


def format_report(report: dict, step: int | None = None) -> str:
    per = ", ".join(f"{k} {v:.3f} (n={report['support'][k]})" if v is not None
                    else f"{k} - (n=0)" for k, v in report["per_class_accuracy"].items())
    at = f" at step {step}" if step is not None else ""
    scores = ""
    if "brier" in report:
        auc = "n/a" if report["auroc"] is None else f"{report['auroc']:.3f}"
        scores = (f"; P(passed): AUROC {auc}, Brier {report['brier']:.3f} vs "
                  f"{report['brier_baseline']:.3f} for the pass rate")
    return (f"critic held-out{at}: accuracy {report['accuracy']:.3f} vs majority-class baseline "
            f"{report['majority_baseline']:.3f} ('{report['majority_class']}', "
            f"{report['num_programs']} programs){scores}; per class: {per}")


def heldout_problem_ids(problem_ids: Sequence[str], fraction: float, seed: int = 0) -> set[str]:
    """A seeded, order-independent choice of ceil(fraction * n) problems (at least one left)."""
    ids = sorted(set(problem_ids))
    if fraction <= 0 or len(ids) < 2:
        return set()
    k = min(max(1, math.ceil(fraction * len(ids))), len(ids) - 1)
    ranked = sorted(ids, key=lambda p: (zlib.crc32(f"{seed}/{p}".encode()), p))
    return set(ranked[:k])


def ground_truth_rows(problems: Sequence, problem_ids: set[str]) -> list[dict]:
    """Each reference solution of the given problems as a passed program (reindented)."""
    rows = []
    for p in problems:
        if p.problem_id not in problem_ids:
            continue
        for k, code in enumerate(p.solutions):
            rows.append({"problem_id": p.problem_id, "sample_index": -1 - k,
                         "code": reindent_solution(code), "result": 1,
                         "error_type": "passed unit tests", "ground_truth": True})
    return rows


def split_rows(rows: list[dict], problems: Sequence, rl: RLConfig, seed: int
               ) -> tuple[list[dict], list[dict], list]:
    """(training rows with ground truth, held-out rows, held-out problems)."""
    held: set[str] = set()
    eval_rows: list[dict] = []
    eval_problems: list = []
    if rl.eval_programs:
        eval_rows = load_program_rows(rl.eval_programs)
    else:
        held = heldout_problem_ids([str(r["problem_id"]) for r in rows], rl.eval_fraction, seed)
        eval_rows = [r for r in rows if str(r["problem_id"]) in held]
        eval_problems = [p for p in problems if p.problem_id in held]
    train_rows = [r for r in rows if str(r["problem_id"]) not in held]
    if not train_rows:
        raise UserError("no critic training programs left after holding out the eval problems")
    if rl.critic_ground_truth:
        train_ids = {str(r["problem_id"]) for r in train_rows}
        train_rows = train_rows + ground_truth_rows(problems, train_ids)
        if held:  # held-out problems keep their ground truth on the held-out side
            eval_rows = eval_rows + ground_truth_rows(problems, held)
    return train_rows, eval_rows, eval_problems


class CriticEvaluation:
    """Held-out critic accuracy from the live train state (called by the batch source)."""

    def __init__(self, rows: list[dict], problems_by_id: dict, tokenizer, *, num_classes: int,
                 majority_class: int, model_config, critic_config, mesh, rules, pool_padding: bool,
                 mode: str, batch_size: int, max_source_len: int, max_target_len: int,
                 workdir: PathLike | None):
        self.rows, self.table, self.tokenizer = rows, problems_by_id, tokenizer
        self.labels = [outcome_class(r["result"], num_classes) for r in rows]
        self.num_classes, self.majority_class = num_classes, majority_class
        self.model_config, self.critic_config = model_config, critic_config
        self.mesh, self.rules, self.pool_padding, self.mode = mesh, rules, pool_padding, mode
        self.batch_size = batch_size
        self.max_source_len, self.max_target_len = max_source_len, max_target_len
        self.workdir = paths.as_path(workdir) if workdir is not None else None
        self._scorer = None
        self.last: dict | None = None

    def __call__(self, params: Any, step: int) -> dict:
        if self._scorer is None:
            self._scorer = CriticScorer(self.model_config, self.critic_config, params,
                                        mesh=self.mesh, rules=self.rules,
                                        pool_padding=self.pool_padding, place_params=False)
        else:
            self._scorer.set_params(params, place=False)
        probs = [r["probs"] for r in score_rows(
            self._scorer, self.rows, self.table, self.tokenizer, batch_size=self.batch_size,
            max_source_len=self.max_source_len, max_target_len=self.max_target_len,
            mode=self.mode)]
        preds = [int(np.argmax(p)) for p in probs]
        report = classification_report(self.labels, preds, self.num_classes, self.majority_class,
                                       p_passed=[float(p[-1]) for p in probs])
        report["step"] = step
        self.last = report
        self._log(report, step)
        return report

    def _log(self, report: dict, step: int) -> None:
        import jax

        if jax.process_index() != 0:
            return
        print(format_report(report, step), flush=True)
        if self.workdir is None:
            return
        flat = {"heldout/accuracy": report["accuracy"],
                "heldout/majority_baseline": report["majority_baseline"]}
        for key in ("auroc", "brier"):
            if report.get(key) is not None:
                flat["heldout/" + key] = report[key]
        for name, value in report["per_class_accuracy"].items():
            if value is not None:
                flat["heldout/accuracy_" + name.replace(" ", "_")] = value
        log_metrics(self.workdir, step, flat)
        write_json(self.workdir / EVAL_FILE, report)


def log_metrics(workdir: PathLike, step: int, metrics: dict) -> None:
    """One row in <workdir>/metrics.jsonl and TensorBoard scalars under tensorboard/ (the tag
    is the key), beside the training loop's own rows."""
    workdir = paths.make_dirs(workdir)
    with paths.open_append(workdir / "metrics.jsonl") as f:
        f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in metrics.items()}})
                + "\n")
    tb = summary_writer(workdir / "tensorboard")
    for key, value in metrics.items():
        tb.add_scalar(key, float(value), int(step))
    tb.close()


class EvaluatedSource:
    """A batch source that runs `evaluate(params, step)` every `every` steps and at `last_step`;
    state and batches come from the wrapped source."""

    def __init__(self, source, evaluate, every: int, last_step: int):
        self.source, self.evaluate = source, evaluate
        self.every, self.last_step = int(every), int(last_step)
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self.source)

    def get_state(self):
        return self.source.get_state()

    def set_state(self, state) -> None:
        self.source.set_state(state)

    def on_start(self, state) -> None:
        self.step = int(state.step)

    def on_step(self, state) -> None:
        self.step += 1
        if self.step == self.last_step or (self.every > 0 and self.step % self.every == 0):
            self.evaluate(state.params, self.step)


def make_batch_source(ctx: StageContext) -> Any:
    """The critic stage's source (see module docstring); `ctx` from train/sources.py."""
    import jax

    num_classes = int(ctx.num_classes)
    data, train, run, rl, tokenizer, problems, rows = stage_inputs(
        ctx, "the critic stage needs data.programs (executed programs: a .jsonl, a "
                 "`coderl critic-data` folder or a CodeRL layout folder)")
    train_rows, eval_rows, eval_problems = split_rows(rows, problems, rl, data.shuffle_seed)
    labels = collections.Counter(outcome_class(r["result"], num_classes) for r in train_rows)
    majority = max(sorted(labels), key=lambda c: labels[c])
    names = class_names(num_classes)
    if jax.process_index() == 0:
        print(f"critic data: {len(train_rows)} training programs ("
              + ", ".join(f"{names[c]} {labels.get(c, 0)}" for c in range(num_classes))
              + f"), {len(eval_rows)} held out", flush=True)
    cfg = pipeline.training_config(data, train, num_classes)
    source = pipeline.make_iterator(pipeline.make_batches(
        "critic", tokenizer, cfg, problems=problems, rows=train_rows), cfg)
    source = ModeSource(source, rl.mode, tokenizer.eos_id)
    if not eval_rows or ctx.mesh is None or jax.process_count() > 1:
        return source
    if rl.eval_programs:
        eval_problems = load_problems(rl.eval_problems or data.problems,
                                      rl.eval_split or data.split or None)
    evaluate = CriticEvaluation(
        eval_rows, problems_by_id(list(eval_problems)), tokenizer, num_classes=num_classes,
        majority_class=majority, model_config=ctx.model_config,
        critic_config=run.critic if run is not None else None, mesh=ctx.mesh,
        rules=run.mesh.logical_axis_rules if run is not None else None,
        pool_padding=train.critic_pool_padding, mode=rl.mode, batch_size=train.batch_size,
        max_source_len=data.max_source_len, max_target_len=data.max_target_len,
        workdir=ctx.workdir)
    return EvaluatedSource(source, evaluate, rl.eval_every, train.num_steps)


def read_eval(workdir: PathLike) -> dict | None:
    path = paths.as_path(workdir) / EVAL_FILE
    return json.loads(path.read_text()) if path.is_file() else None

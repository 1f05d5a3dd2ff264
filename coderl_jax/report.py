"""The demo's report: report.json (every measured number), report.md (the same as tables, pass@k
with its bootstrap interval and the paired differences between stages) and PNG plots (training
curves, pass@k per stage with its interval, outcome mix per stage, critic calibration)."""
from __future__ import annotations

import json
from typing import Any

from etils import epath

from coderl_jax import paths
from coderl_jax.config import STAGES
from coderl_jax.files import atomic_write, write_json
from coderl_jax.paths import PathLike

EVAL_STAGES = ("warmup", "offline_rl", "online_rl", "critical_sampling")
LABELS = {"warmup": "warm-up", "critic": "critic", "offline_rl": "offline RL",
          "online_rl": "online RL", "critical_sampling": "critical sampling",
          "plain_same_budget": "plain, same budget"}
OUTCOMES = ("compile error", "runtime error", "failed tests", "passed")
DIFFERENCE_LABELS = {"offline_rl_minus_warmup": "offline RL − warm-up",
                     "online_rl_minus_warmup": "online RL − warm-up",
                     "critical_minus_plain": "critical − plain sampling, same budget"}


def _savefig(fig, out: epath.Path) -> None:
    """A PNG of `fig` at `out` (local or gs://), written whole."""
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def read_metrics(path: epath.Path) -> list[dict]:
    """Rows of a training stage's metrics.jsonl (absent file: none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pass_rows(report: dict) -> list[tuple[str, dict]]:
    stages = report["stages"]
    rows = [(LABELS[s], stages[s]) for s in EVAL_STAGES if s in stages]
    plain = stages.get("critical_sampling", {}).get("plain_same_budget")
    if plain:
        rows.append((LABELS["plain_same_budget"], plain))
    return rows


# ------------------------------------------------------------------------------------ plots


def plot_training_curves(workdir: epath.Path, out: epath.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STAGES), figsize=(4 * len(STAGES), 3.2))
    for ax, stage in zip(axes, STAGES):
        rows = [r for r in read_metrics(workdir / stage / "metrics.jsonl")
                if "step" in r and "loss" in r]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=".", label="loss")
        if rows and "mean_return" in rows[0]:
            ax.plot([r["step"] for r in rows], [r["mean_return"] for r in rows],
                    label="mean return")
        ax.set_title(LABELS[stage])
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, out)
    plt.close(fig)


def plot_pass_at_k(report: dict, out: epath.Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = _pass_rows(report)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, k in enumerate(("heldout_pass@1", "heldout_pass@5")):
        values = [r[k] for _, r in rows]
        errors = None
        if all(k + "_ci" in r for _, r in rows):  # the bootstrap interval as an error bar
            errors = [[v - r[k + "_ci"]["low"] for v, (_, r) in zip(values, rows)],
                      [r[k + "_ci"]["high"] - v for v, (_, r) in zip(values, rows)]]
        ax.bar(x + (i - 0.5) * 0.38, values, 0.38, yerr=errors, capsize=3,
               label=k.split("_")[1])
    ax.set_xticks(x, [name for name, _ in rows], fontsize=8)
    ax.set_ylabel("held-out problems solved")
    ax.set_title("pass@k on the held-out demo problems")
    ax.legend()
    fig.tight_layout()
    _savefig(fig, out)
    plt.close(fig)


def plot_outcomes(report: dict, out: epath.Path) -> None:
    import matplotlib.pyplot as plt

    rows = _pass_rows(report)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bottom = [0.0] * len(rows)
    for outcome in OUTCOMES:
        vals = [r["outcomes"][outcome] for _, r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=outcome)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    ax.set_ylabel("share of sampled programs")
    ax.set_title("outcome mix on the held-out demo problems")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    _savefig(fig, out)
    plt.close(fig)


def plot_calibration(report: dict, out: epath.Path) -> None:
    import matplotlib.pyplot as plt

    bins = [b for b in report["critic"]["calibration"]["bins"] if b["programs"]]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.plot([b["mean_predicted"] for b in bins], [b["pass_rate"] for b in bins], marker="o",
            label="critic")
    for b in bins:
        ax.annotate(str(b["programs"]), (b["mean_predicted"], b["pass_rate"]), fontsize=7)
    ax.set_xlabel("critic P(passed)")
    ax.set_ylabel("observed pass rate")
    ax.set_title("critic calibration (held-out programs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, out)
    plt.close(fig)


# ----------------------------------------------------------------------------------- tables


def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(r: dict, key: str, signed: bool = False) -> str:
    """`0.123 [0.101, 0.146]`: the value and, when the report has it, its interval."""
    fmt = (lambda v: f"{v:+.3f}") if signed else _f
    ci = r.get(key + "_ci")
    return fmt(r[key]) + ("" if ci is None else f" [{fmt(ci['low'])}, {fmt(ci['high'])}]")


def markdown(report: dict) -> str:
    """report.md: the report's numbers as tables."""
    lines = ["# coderl-jax demo report", "",
             f"Seed {report['seed']}; {report['problems']['train']} training and "
             f"{report['problems']['heldout']} held-out problems; {report['seconds']:.0f} s "
             "in all. Every number below was measured in this run.", "",
             "## Held-out pass@k", "",
             "| stage | pass@1 | pass@5 | compile error | runtime error | failed tests | passed |",
             "|---|---|---|---|---|---|---|"]
    for name, r in _pass_rows(report):
        o = r["outcomes"]
        lines.append(f"| {name} | {_ci(r, 'heldout_pass@1')} | {_ci(r, 'heldout_pass@5')} | "
                     + " | ".join(_f(o[k], 2) for k in OUTCOMES) + " |")
    cs = report["stages"].get("critical_sampling", {})
    if cs:
        lines += ["", f"Critical sampling and its plain baseline draw "
                  f"{cs['budget_per_problem']} programs per problem (origins: "
                  + ", ".join(f"{k} {v}" for k, v in cs["origins"].items()) + "); the other "
                  f"stages draw {report['config']['eval']['num_samples']}."]
    ci = report.get("ci")
    if ci:
        lines += ["", f"In brackets: {100 * ci['level']:g}% intervals, bootstrap over the held-out "
                  f"problems ({ci['resamples']} resamples, seed {ci['seed']})."]
    diffs = report.get("differences")
    if diffs:
        lines += ["", "## Differences", "",
                  "Paired over the same held-out problems (each resample draws the same problems "
                  "for both sides); an interval above 0 is a gain the sampling noise does not "
                  "explain.", "", "| difference | pass@1 | pass@5 |", "|---|---|---|"]
        for name, d in diffs.items():
            lines.append(f"| {DIFFERENCE_LABELS.get(name, name)} | "
                         f"{_ci(d, 'heldout_pass@1', True)} | {_ci(d, 'heldout_pass@5', True)} |")
    c = report["critic"]
    scores = ""
    if c.get("brier") is not None:
        scores = (f" Its P(passed) ranks passing above failing programs with AUROC "
                  f"{_f(c.get('auroc'))} (0.5: chance); Brier score {_f(c['brier'])} vs "
                  f"{_f(c.get('brier_baseline'))} for always predicting the held-out pass rate.")
    lines += ["", "## Critic", "",
              f"Held-out accuracy {_f(c['accuracy'])} on {c['num_programs']} programs vs "
              f"{_f(c['majority_baseline'])} for always predicting the training majority "
              f"({c['majority_class']}).{scores}", "",
              "| class | programs | accuracy |", "|---|---|---|"]
    for name, acc in c["per_class_accuracy"].items():
        lines.append(f"| {name} | {c['support'][name]} | {_f(acc)} |")
    cal = c.get("calibration")
    if cal and cal["programs"]:
        lines += ["", f"Calibration of P(passed) on {cal['programs']} programs the final actor "
                  f"sampled for held-out problems (Brier score {_f(cal['brier'])}, AUROC "
                  f"{_f(cal.get('auroc'))}):", "",
                  "| P(passed) | programs | mean predicted | pass rate |", "|---|---|---|---|"]
        for b in cal["bins"]:
            lines.append(f"| {b['low']:.1f}–{b['high']:.1f} | {b['programs']} | "
                         f"{_f(b['mean_predicted'])} | {_f(b['pass_rate'])} |")
    lines += ["", "## Throughput", "", "| stage | what | figure |", "|---|---|---|"]
    for stage in STAGES:
        t = (report["critic"] if stage == "critic" else report["stages"][stage])["training"]
        lines.append(f"| {LABELS[stage]} | training, {t['steps']} steps in {t['seconds']:.0f} s"
                     f" | {t['tokens_per_s']:.0f} tokens/s |")
    for stage in ("warmup", "offline_rl", "online_rl"):
        r = report["stages"][stage]
        lines.append(f"| {LABELS[stage]} eval | sampling {r['programs']} programs | "
                     f"{r['sampling']['tokens_per_s']:.0f} tokens/s, "
                     f"{r['sampling']['programs_per_s']:.1f} programs/s |")
        lines.append(f"| {LABELS[stage]} eval | execution | "
                     f"{r['execution']['programs_per_s']:.1f} programs/s |")
    cd = report.get("critic_data")
    if cd:
        lines.append(f"| critic data | {cd['samples']} samples + {cd['greedy']} greedy: "
                     f"sampling {cd['sample_seconds']:.0f} s, execution "
                     f"{cd['execute_seconds']:.0f} s | sample pass rate "
                     f"{_f(cd['sample_pass_rate'])} |")
    online = report["stages"].get("online_rl", {}).get("online")
    if online:
        lines.append(f"| online RL | device idle waiting for execution | "
                     f"{_f(online.get('idle_fraction'))} of the time |")
    lines += ["", "## Time per step", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["step_seconds"].items()]
    e = report["export"]
    lines += ["", "## Export", "",
              f"PyTorch (HF `T5ForConditionalGeneration`) actor: `{e['path']}`; critic in "
              f"CodeRL's layout: `{e['critic_path']}`. Max |logit difference| JAX vs PyTorch: "
              + ("not measured (torch is not installed)" if e["max_abs_logit_diff"] is None
                 else f"{e['max_abs_logit_diff']:.2e}") + ".", "", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, workdir: PathLike) -> None:
    """Plots, report.json and report.md under `workdir`."""
    import matplotlib

    matplotlib.use("Agg")
    workdir = paths.as_path(workdir)
    plots = {"training_curves.png": lambda p: plot_training_curves(workdir, p),
             "pass_at_k.png": lambda p: plot_pass_at_k(report, p),
             "outcomes.png": lambda p: plot_outcomes(report, p),
             "critic_calibration.png": lambda p: plot_calibration(report, p)}
    for name, draw in plots.items():
        draw(workdir / name)
    report["plots"] = list(plots)
    write_json(workdir / "report.json", report)
    with atomic_write(workdir / "report.md") as f:
        f.write(markdown(report))

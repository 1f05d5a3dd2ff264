"""`coderl demo` at miniature scale: every stage runs, the report holds SPEC §8's numbers,
the plots are images, the export reloads in PyTorch with the same logits, and a second run
with the same seed gives the same numbers. The first run is a user's: `coderl demo` of the
package pip-installed into a fresh venv, run from a folder outside the checkout."""
import json
import math
import subprocess
import sys

import pytest

from conftest import REPO

# every stage, as small as it goes: a few steps each, 6 held-out problems, 20 training problems'
# critic data
MINI = ["warmup.train.num_steps=20", "critic.train.num_steps=3", "offline_rl.train.num_steps=2",
        "online_rl.train.num_steps=2", "eval.limit=6", "eval.num_samples=5",
        "critic_data.num_samples=2", "critic_data.limit=24", "critical_sampling.num_samples=3",
        "critical_sampling.rounds=1"]
TIMING_KEYS = {"seconds", "step_seconds", "sampling", "execution", "training", "online",
               "sample_seconds", "execute_seconds", "tokens_per_s", "path", "critic_path",
               "config"}


def measured(x):
    """The report without timings and paths: what must repeat exactly under the same seed."""
    if isinstance(x, dict):
        return {k: measured(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [measured(v) for v in x]
    return x


def fractions(report):
    for stage, r in report["stages"].items():
        yield stage, r["heldout_pass@1"]
        yield stage, r["heldout_pass@5"]
    yield "critic", report["critic"]["accuracy"]
    yield "critic", report["critic"]["majority_baseline"]


# The library run, as a script (a process of its own, like the CLI run, so both can share one
# persistent compilation cache: the second run reuses the first's executables, ~25 s less).
LIBRARY_RUN = """
import sys
from pathlib import Path
from coderl_jax.config import load_config
from coderl_jax.demo import default_config_path, run_demo
run_demo(load_config(default_config_path(), sys.argv[2:]), Path(sys.argv[1]), progress=False)
"""


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory, installed):
    """Two runs of the miniature demo with the same seed: the installed `coderl` CLI from
    another folder, then the library from the checkout; both with the default tokenizer (the
    packaged one), as a user's first run has."""
    cache = tmp_path_factory.mktemp("jax_cache")
    env = {**installed.env,
           "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    first = tmp_path_factory.mktemp("demo1")
    proc = subprocess.run([installed.venv / "bin" / "coderl", "demo", "--workdir", str(first),
                           "--no-progress", *[f"--config.{o}" for o in MINI]],
                          cwd=installed.elsewhere, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = tmp_path_factory.mktemp("demo2")
    lib = subprocess.run([sys.executable, "-c", LIBRARY_RUN, str(second), *MINI], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=900)
    assert lib.returncode == 0, lib.stderr[-3000:]
    assert any(cache.iterdir())  # the cache was written (and so read by the second run)
    return first, second, proc


@pytest.mark.slow
def test_demo_report_has_every_stage(demo_runs):
    workdir, _, proc = demo_runs
    report = json.loads((workdir / "report.json").read_text())
    assert set(report["stages"]) == {"warmup", "offline_rl", "online_rl", "critical_sampling"}
    for stage, value in fractions(report):
        assert 0.0 <= value <= 1.0, (stage, value)
    # configs/demo.py's train scale (3x the bundled training problems), its corpus vocabulary
    assert report["problems"] == {"train": 792, "heldout": 6}
    assert report["vocabulary"]["kind"] == "corpus" and report["vocabulary"]["size"] < 3000
    assert (workdir / "export" / "actor_hf" / "vocab.json").is_file()  # the export carries it
    assert report["seconds"] > 0 and all(v > 0 for v in report["step_seconds"].values())
    # each stage trained the steps asked for and logged them
    assert report["stages"]["warmup"]["training"]["steps"] == 20
    assert report["critic"]["training"]["steps"] == 3
    assert report["stages"]["online_rl"]["training"]["steps"] == 2
    # eval: 6 problems x 5 samples, outcome shares sum to 1
    for stage in ("warmup", "offline_rl", "online_rl"):
        r = report["stages"][stage]
        assert r["programs"] == 30
        assert math.isclose(sum(r["outcomes"].values()), 1.0)
        assert r["heldout_pass@1"] <= r["heldout_pass@5"]
    cs = report["stages"]["critical_sampling"]
    assert cs["budget_per_problem"] == 6 and sum(cs["origins"].values()) == 36
    assert report["critic_data"]["problems"] == 24 and report["critic_data"]["samples"] == 48
    assert report["critic"]["calibration"]["programs"] == 36
    # every stage's pass@k has its bootstrap interval; the differences are paired and match
    assert report["ci"]["level"] == 0.9 and report["ci"]["seed"] == report["seed"]
    for name, r in [*report["stages"].items(), ("plain", cs["plain_same_budget"])]:
        for key in ("heldout_pass@1", "heldout_pass@5"):
            assert 0.0 <= r[key + "_ci"]["low"] <= r[key + "_ci"]["high"] <= 1.0, (name, key)
    diffs = report["differences"]
    sides = {"offline_rl_minus_warmup": ("offline_rl", "warmup"),
             "online_rl_minus_warmup": ("online_rl", "warmup")}
    assert set(diffs) == set(sides) | {"critical_minus_plain"}
    for name, (b, a) in sides.items():
        for key in ("heldout_pass@1", "heldout_pass@5"):
            assert diffs[name][key] == pytest.approx(report["stages"][b][key]
                                                     - report["stages"][a][key])
            assert -1.0 <= diffs[name][key + "_ci"]["low"] <= diffs[name][key + "_ci"]["high"]
    assert diffs["critical_minus_plain"]["heldout_pass@1"] == pytest.approx(
        cs["heldout_pass@1"] - cs["plain_same_budget"]["heldout_pass@1"])
    # the critic's P(passed): AUROC (None only if one class is absent) and Brier score
    for key in ("auroc", "brier", "brier_baseline"):
        assert key in report["critic"]
    assert 0.0 <= report["critic"]["brier"] <= 1.0
    assert "auroc" in report["critic"]["calibration"]
    # the export is a transformers folder whose logits match ours (tested at 1e-5 elsewhere;
    # here a loose bound: it is the demo's own end-to-end check)
    assert (workdir / "export" / "actor_hf" / "config.json").is_file()
    assert report["export"]["max_abs_logit_diff"] is not None
    assert report["export"]["max_abs_logit_diff"] < 1e-4
    md = (workdir / "report.md").read_text()
    assert "| warm-up |" in md and "| critical sampling |" in md
    assert f"{cs['heldout_pass@1']:.3f}" in md
    ci = report["stages"]["warmup"]["heldout_pass@1_ci"]
    assert f"| {report['stages']['warmup']['heldout_pass@1']:.3f} [{ci['low']:.3f}, " in md
    assert "## Differences" in md and "| online RL − warm-up |" in md
    assert proc.stdout.endswith(md + "\n")  # the CLI ends by printing report.md
    # progress goes to stderr as one line per step
    assert proc.stderr.count("[demo ") == 20 and "[demo 10/10] export done" in proc.stderr


@pytest.mark.slow
def test_demo_plots_are_images(demo_runs):
    import matplotlib.image

    workdir = demo_runs[0]
    report = json.loads((workdir / "report.json").read_text())
    assert len(report["plots"]) == 4
    for name in report["plots"]:
        image = matplotlib.image.imread(workdir / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, name
        assert image.std() > 0, f"{name} is blank"


@pytest.mark.slow
def test_demo_same_seed_same_numbers(demo_runs):
    first, second, _ = demo_runs
    a = json.loads((first / "report.json").read_text())
    b = json.loads((second / "report.json").read_text())
    assert measured(a) == measured(b)
    # and the programs themselves are the same
    def programs(workdir):
        rows = [json.loads(line) for line in (workdir / "eval" / "online_rl.jsonl").open()]
        return [(r["problem_id"], r["sample_index"], r["code"], r["result"]) for r in rows]

    assert programs(first) == programs(second)


@pytest.mark.parametrize("flag, message", [
    ("--config.tokenizer=/nonexistent/tok", "coderl: error: tokenizer folder not found: "
                                            "/nonexistent/tok"),
    ("--config.warmup.train.no_such_field=1", "no_such_field"),
])
def test_demo_bad_input_is_one_line_and_touches_nothing(tmp_path, flag, message):
    workdir = tmp_path / "w"
    proc = subprocess.run([sys.executable, "-m", "coderl_jax", "demo", "--workdir",
                           str(workdir), flag], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert not workdir.exists()
    (tmp_path / "file").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "coderl_jax", "demo", "--workdir",
                           str(tmp_path / "file")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr

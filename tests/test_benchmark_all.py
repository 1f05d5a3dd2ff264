"""`coderl benchmark all`: one table of train / sample / execute throughput with references."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SMALL = ["--size", "tiny", "--batch", "8", "--src-len", "32", "--tgt-len", "16",
         "--new-tokens", "8", "--steps", "2", "--limit", "16", "--sample-problems", "2",
         "--samples-per-problem", "4"]


def _run(*flags):
    proc = subprocess.run([sys.executable, "-m", "coderl_jax", "benchmark", "all", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XLA_FLAGS": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_benchmark_all_has_every_row_and_reference():
    result = json.loads(_run(*SMALL, "--json"))
    assert [r["what"] for r in result["rows"]] == [
        "training", "sampling", "sampling 2 problems x 4",
        "sampling 2 x 4, top-p 0.95 + top-k 50", "execution"]
    for r in result["rows"]:
        if "top-p" in r["what"]:  # ours only
            assert r["ours"] > 0 and r["reference"] is None, r
            continue
        assert r["ours"] > 0 and r["reference"] > 0, r
        assert r["ratio"] == pytest.approx(r["ours"] / r["reference"], rel=0.02), r
    details = result["details"]
    assert details["train"]["size"] == "tiny" and details["train"]["steps"] == 2
    assert details["sample"]["new_tokens"] == 8
    many = details["sample_many"]
    assert (many["problems"], many["samples_per_problem"], many["rows_per_kv_copy"]) == (2, 4, 4)
    assert many["filtered_step_ratio"] > 0
    assert details["execute"]["programs"] == 16 and details["execute"]["passed"] == 16
    assert result["platform"] == "cpu" and result["mfu"] is None  # no peak FLOPs for a CPU
    assert result["peak_host_memory_mb"] > 100
    assert result["train_flops_per_token"] > 0
    # the table printed without --json shows the same figures
    from coderl_jax.benchmarks.all import format_text

    table = format_text(result)
    assert "| training | tokens/s |" in table and "| execution | programs/s |" in table
    assert "model FLOPs utilisation (training): n/a on CPU" in table
    assert f"{result['rows'][2]['ours']:,.1f}" in table


def test_benchmark_all_rejects_bad_sizes():
    proc = subprocess.run([sys.executable, "-m", "coderl_jax", "benchmark", "all", "--size",
                           "tiny", "--steps", "0"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "XLA_FLAGS": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "coderl: error: --steps must be >= 1, got 0"


def test_train_flops_per_token_counts_lm_head_on_targets_only():
    from coderl_jax.benchmarks.all import train_flops_per_token
    from coderl_jax.config import model_preset

    c = model_preset("tiny")
    both = train_flops_per_token({"src_len": 64, "tgt_len": 64}, c)
    more_targets = train_flops_per_token({"src_len": 32, "tgt_len": 96}, c)
    # the 32100 x d LM head dominates the tiny model: more target tokens, more FLOPs per token
    assert more_targets > both
    assert both > 6 * c.d_model * c.vocab_size / 2

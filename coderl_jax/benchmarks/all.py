"""`coderl benchmark all`: train, sample and execute at one model size, in one table.

Runs the three benchmarks one after another in this process (each with its own defaults unless
set here; sampling twice: --batch distinct prompts, then CodeRL's workload of --sample-problems x
--samples-per-problem rows, also timed with top-p 0.95 + top-k 50) and gathers: training
tokens/s, sampled tokens/s, programs executed/s, peak memory
(device memory where the backend reports it, else the process's peak RSS), and on an
accelerator the model FLOPs utilisation against the chip's peak (bfloat16 dense, from the
device kind). On CPU it also runs the HF PyTorch references (unless --no-reference; each in a
process of its own, at the same --dtype) and gives ours / reference for each.
"""
from __future__ import annotations

import argparse
import time

from coderl_jax.benchmarks import execute, isolation, sample, train
from coderl_jax.config import model_preset

# peak dense bfloat16 FLOP/s per chip, by jax `device_kind`
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
              "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
              "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
              "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-SXM4-40GB": 312e12}


def add_arguments(p) -> None:
    p.add_argument("--size", default="small", choices=["tiny", "small", "base", "large"],
                   help="model shape (docs/SPEC.md §7) of the train and sample benchmarks")
    p.add_argument("--batch", type=int, default=8, help="rows per train step and sampler call")
    p.add_argument("--src-len", type=int, default=256, help="source / prompt tokens")
    p.add_argument("--tgt-len", type=int, default=256, help="training target tokens")
    p.add_argument("--new-tokens", type=int, default=128, help="sampled tokens per row")
    p.add_argument("--steps", type=int, default=5, help="timed train steps")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype of training and sampling, ours and the references'")
    p.add_argument("--sample-problems", type=int, default=4,
                   help="CodeRL's sampling workload: prompts x --samples-per-problem rows "
                        "(0: skip that row)")
    p.add_argument("--samples-per-problem", type=int, default=16,
                   help="samples per prompt of that row (HF: num_return_sequences)")
    p.add_argument("--problems", default="demo",
                   help="SRC whose reference programs the execute benchmark runs")
    p.add_argument("--split", default=None, help="part of --problems")
    p.add_argument("--limit", type=int, default=300, help="programs executed (0: all)")
    p.add_argument("--workers", type=int, default=2, help="sandbox workers")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the HF PyTorch and fresh-interpreter references")
    p.add_argument("--seed", type=int, default=0)


def _args(module, **values) -> argparse.Namespace:
    """`module`'s own defaults with `values` on top."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    defaults = vars(parser.parse_args([] if module is not execute else
                                      ["--problems", values["problems"]]))
    unknown = set(values) - set(defaults)
    if unknown:
        raise ValueError(f"{module.__name__} has no options {sorted(unknown)}")
    return argparse.Namespace(**{**defaults, **values})


def train_flops_per_token(result: dict, model_config) -> float:
    """Model FLOPs per trained token: 6 x the parameters each token passes through (encoder
    tokens: encoder; target tokens: decoder + the LM head), plus attention scores and values."""
    c = model_config
    d, dff, h, kv = c.d_model, c.d_ff, c.num_heads, c.d_kv
    attn = 4 * d * h * kv  # q, k, v, o
    enc_layer = attn + 2 * d * dff
    dec_layer = 2 * attn + 2 * d * dff
    s, t = result["src_len"], result["tgt_len"]
    enc = 6 * c.num_encoder_layers * (enc_layer + 2 * s * h * kv)  # per source token
    dec = 6 * (c.num_decoder_layers * (dec_layer + 2 * (t + s) * h * kv) + d * c.vocab_size)
    return (s * enc + t * dec) / (s + t)


def _device():
    import jax

    dev = jax.devices()[0]
    return dev, jax.device_count()


def run(args) -> dict:
    dev, n_dev = _device()
    t0 = time.perf_counter()
    common = dict(size=args.size, batch=args.batch, src_len=args.src_len, seed=args.seed,
                  no_reference=args.no_reference)
    tr = train.run(_args(train, **common, tgt_len=args.tgt_len, steps=args.steps,
                         dtype=args.dtype))
    sa = sample.run(_args(sample, **common, new_tokens=args.new_tokens, dtype=args.dtype))
    many = None
    if args.sample_problems:  # the same prompt shape, P x N rows, and CodeRL's filtering timed
        many = sample.run(_args(sample, **common, new_tokens=args.new_tokens, dtype=args.dtype,
                                problems=args.sample_problems,
                                samples_per_problem=args.samples_per_problem,
                                top_p=0.95, top_k=50))
    ex = execute.run(_args(execute, problems=args.problems, split=args.split, limit=args.limit,
                           workers=args.workers,
                           baseline_limit=1 if args.no_reference else 0))
    peak_flops = PEAK_FLOPS.get(dev.device_kind) if dev.platform != "cpu" else None
    flops = train_flops_per_token(tr, model_preset(args.size))
    mfu = (tr["tokens_per_s"] * flops / (peak_flops * n_dev)) if peak_flops else None
    rows = [
        {"what": "training", "unit": "tokens/s", "ours": tr["tokens_per_s"],
         "reference": tr.get("reference_tokens_per_s"), "ratio": tr.get("ratio")},
        {"what": "sampling", "unit": "tokens/s", "ours": sa["tokens_per_s"],
         "reference": sa.get("reference_tokens_per_s"), "ratio": sa.get("ratio")},
    ]
    if many is not None:
        rows.append({"what": f"sampling {many['problems']} problems x "
                             f"{many['samples_per_problem']}",
                     "unit": "tokens/s", "ours": many["tokens_per_s"],
                     "reference": many.get("reference_tokens_per_s"),
                     "ratio": many.get("ratio")})
        rows.append({"what": f"sampling {many['problems']} x {many['samples_per_problem']}, "
                             "top-p 0.95 + top-k 50", "unit": "tokens/s",
                     "ours": many["filtered_tokens_per_s"], "reference": None, "ratio": None})
    rows += [
        {"what": "execution", "unit": "programs/s", "ours": ex["programs_per_s"],
         "reference": None if args.no_reference else ex["reference_programs_per_s"],
         "ratio": None if args.no_reference else ex["ratio"]},
    ]
    return {"benchmark": "all", "size": args.size, "device": dev.device_kind,
            "platform": dev.platform, "devices": n_dev, "rows": rows,
            "train_flops_per_token": flops, "mfu": mfu,
            "peak_device_memory_mb": sample.peak_device_memory_mb(dev),
            "peak_host_memory_mb": isolation.peak_rss_mb(),
            "seconds": time.perf_counter() - t0,
            "details": {"train": tr, "sample": sa, "sample_many": many, "execute": ex}}


def format_text(result: dict) -> str:
    """The table `coderl benchmark all` prints without --json."""
    def num(x):
        return "—" if x is None else f"{x:,.1f}"

    lines = [f"coderl benchmark all: size {result['size']} on {result['devices']} x "
             f"{result['device']} ({result['platform']})", "",
             "| what | unit | ours | reference | ours / reference |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['what']} | {r['unit']} | {num(r['ours'])} | {num(r['reference'])}"
                     f" | {ratio} |")
    mfu = "n/a on CPU" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
    lines += ["", f"model FLOPs utilisation (training): {mfu}",
              f"peak device memory: {num(result['peak_device_memory_mb'])} MB; "
              f"peak host memory: {num(result['peak_host_memory_mb'])} MB",
              "references: HF transformers T5 + torch AdamW (training), HF generate (sampling),"
              " a fresh python per program (execution)"]
    return "\n".join(lines)

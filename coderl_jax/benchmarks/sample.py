"""`coderl benchmark sample`: generated tokens/s of the jitted sampler vs HF `generate`.

Two workloads: `--batch B` distinct prompts, one sample each; or CodeRL's, `--problems P
--samples-per-problem N` (P * N rows decoded together, the sampler's shared layout reading one
cross-attention K/V copy per problem) against HF `generate(num_return_sequences=N)` on the same
P prompts. Both sides run random-weight models of the same shape and dtype on prompts of
`--src-len` tokens and are forced to generate exactly `--new-tokens` tokens per row (EOS ignored;
HF: `min_new_tokens = max_new_tokens`), sampling at temperature 1 without filtering; HF runs in a
process of its own (see `isolation`). Our figure is end to end per call (encoder, cache set-up,
decode loop, copy back to the host); compile time is measured separately: the tracing, lowering
and XLA compile durations JAX reports (its `jax.monitoring` events) during the first call, which
also warms up. `--top-p` / `--top-k` also time our sampler with that filtering (CodeRL samples
with top-p 0.95 and top-k 50) and report its step time over the plain one.

Also reported: peak memory of each side (device memory where the backend reports it, else the
process's peak RSS) and the bytes one decode step reads on average (`bytes_per_step`: the
decoder and LM head weights, the self-attention cache windows, the cross-attention K/V), with
the fraction of the chip's memory bandwidth that makes on a known accelerator.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from coderl_jax.benchmarks import isolation
from coderl_jax.config import model_preset
from coderl_jax.errors import UserError
from coderl_jax.hf_config import hf_config_from_model_config

# jax.monitoring duration events that make up compile time (tracing, lowering, XLA compile)
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def add_arguments(p) -> None:
    p.add_argument("--size", default="small", choices=["tiny", "small", "base", "large"],
                   help="model shape (docs/SPEC.md §7)")
    p.add_argument("--batch", type=int, default=8,
                   help="distinct prompts sampled together, one sample each")
    p.add_argument("--problems", type=int, default=0,
                   help="CodeRL's workload instead of --batch: P prompts x --samples-per-problem")
    p.add_argument("--samples-per-problem", type=int, default=16,
                   help="samples of each of --problems (HF: num_return_sequences)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="also time our sampler with this nucleus filtering (e.g. 0.95)")
    p.add_argument("--top-k", type=int, default=0,
                   help="also time our sampler with this top-k filtering (e.g. 50)")
    p.add_argument("--src-len", type=int, default=256, help="prompt tokens")
    p.add_argument("--new-tokens", type=int, default=128, help="generated tokens per row")
    p.add_argument("--repeats", type=int, default=3, help="timed calls (median reported)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype of both sides (ours: bf16 matmul weights and KV cache, "
                        "float32 logits; HF: the model cast with .to(torch.bfloat16))")
    isolation.add_device_argument(p)
    p.add_argument("--no-reference", action="store_true", help="skip HF generate")
    p.add_argument("--seed", type=int, default=0)


# peak memory bandwidth per chip (bytes/s), by jax `device_kind`
PEAK_BANDWIDTH = {"TPU v4": 1.2e12, "TPU v5 lite": 0.82e12, "TPU v5e": 0.82e12,
                  "TPU v5p": 2.76e12, "TPU v5": 2.76e12, "TPU v6 lite": 1.64e12,
                  "TPU v6e": 1.64e12, "NVIDIA H100 80GB HBM3": 3.35e12, "NVIDIA H100": 3.35e12,
                  "NVIDIA H200": 4.8e12, "NVIDIA A100-SXM4-80GB": 2.04e12,
                  "NVIDIA A100-SXM4-40GB": 1.56e12}


def _check(args) -> None:
    for flag, v in (("--batch", args.batch), ("--src-len", args.src_len),
                    ("--new-tokens", args.new_tokens), ("--repeats", args.repeats),
                    ("--samples-per-problem", args.samples_per_problem)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if args.problems < 0:
        raise UserError(f"--problems must be >= 0, got {args.problems}")
    if args.src_len < 2:
        raise UserError("--src-len must be >= 2")
    if not 0.0 < args.top_p <= 1.0:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0, got {args.top_k}")


def layout(args) -> tuple[int, int]:
    """(prompts, samples per prompt) of the run: --problems x --samples-per-problem, or
    --batch x 1."""
    return (args.problems, args.samples_per_problem) if args.problems else (args.batch, 1)


def _prompts(args, vocab: int) -> np.ndarray:
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(5, min(vocab, 32000), size=(layout(args)[0], args.src_len),
                       dtype=np.int64)
    ids[:, 0] = 1  # <s>
    ids[:, -1] = 2  # </s>
    return ids


def bytes_per_step(config, rows: int, kv_copies: int, src_len: int,
                   windows: tuple[int, ...]) -> dict:
    """Bytes one cached decoder step reads on average, by kind: the decoder and LM-head weights
    (matmul weights in the compute dtype), the self-attention K/V cache (a step attends over every
    slot of its cache window, `decoding.cache_windows`: filled or not) and the cross-attention K/V
    (`kv_copies` copies of `src_len` positions: one per row, or one per problem in the shared
    layout)."""
    c = config
    item = np.dtype(c.dtype).itemsize
    d, inner = c.d_model, c.num_heads * c.d_kv
    layer = 4 * d * inner + 4 * d * inner + 2 * d * c.d_ff  # self q,k,v,o + cross q,k,v,o + mlp
    weights = (c.num_decoder_layers * layer + c.vocab_size * d) * item
    kv = c.num_decoder_layers * 2 * inner * item  # K and V of one position, every layer
    # the window of step t is the first one > t: windows[i] slots for windows[i] - windows[i-1]
    slot_steps = sum(w * (w - prev) for prev, w in zip((0,) + windows, windows))
    return {"weights": weights, "self_attention_cache": rows * slot_steps * kv // windows[-1],
            "cross_attention_kv": kv_copies * src_len * kv}


def _ours(args, config, prompts: np.ndarray) -> dict:
    import jax

    from coderl_jax.inference.decoding import SamplingConfig
    from coderl_jax.inference.sampler import Sampler, SampleRequest, choose_rows_per_problem
    from coderl_jax.models import t5
    from coderl_jax.partitioning import make_mesh

    n_prompts, per_prompt = layout(args)
    rows = n_prompts * per_prompt
    params = t5.init_params(config, jax.random.PRNGKey(args.seed))
    requests = [SampleRequest(f"bench{i}", row.tolist(), tuple(range(per_prompt)))
                for i, row in enumerate(prompts)]

    def sampler(sampling: SamplingConfig) -> Sampler:
        return Sampler(config, params, mesh=make_mesh(), batch_size=rows,
                       max_new_tokens=args.new_tokens, max_source_len=args.src_len,
                       sampling=sampling, stop_at_eos=False, source_buckets=(args.src_len,))

    def timed(s: Sampler) -> tuple[float, int, float]:
        """(median seconds per call, tokens per call, compile seconds of the first call)."""
        def call(seed: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            samples = list(s.sample(requests, seed=seed))
            return time.perf_counter() - t0, sum(len(x.output_ids) for x in samples)

        compile_s = 0.0

        def on_event(event: str, seconds: float, **_) -> None:
            nonlocal compile_s
            if event in COMPILE_EVENTS:
                compile_s += seconds

        jax.monitoring.register_event_duration_secs_listener(on_event)
        try:
            _, n_tokens = call(0)
        finally:
            jax.monitoring.unregister_event_duration_listener(on_event)
        times = []
        for r in range(args.repeats):
            dt, n = call(r + 1)
            if n != rows * args.new_tokens:
                raise RuntimeError(f"sampler produced {n} tokens, expected "
                                   f"{rows * args.new_tokens}")
            times.append(dt)
        return statistics.median(times), n_tokens, compile_s

    plain = sampler(SamplingConfig(temperature=1.0))
    steady, n_tokens, compile_s = timed(plain)
    r = plain.rows_per_problem or choose_rows_per_problem(plain.rows_per_shard,
                                                           [per_prompt] * n_prompts)
    out = {"tokens_per_s": n_tokens / steady, "seconds_per_call": steady,
           "compile_s": compile_s, "devices": len(jax.devices()),
           "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
           "rows_per_kv_copy": r,
           "bytes_per_step": bytes_per_step(config, rows, rows // r, args.src_len,
                                            plain.cache_windows)}
    if args.top_p < 1.0 or args.top_k:
        filtered, _, _ = timed(sampler(SamplingConfig(temperature=1.0, top_p=args.top_p,
                                                      top_k=args.top_k)))
        out["filtered_tokens_per_s"] = n_tokens / filtered
        out["filtered_seconds_per_call"] = filtered
    out["peak_device_memory_mb"] = peak_device_memory_mb(jax.devices()[0])
    return out


def peak_device_memory_mb(dev) -> float | None:
    """Peak bytes in use on `dev` in MiB, or None where the backend keeps no memory stats."""
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # backends without memory stats (CPU)
        return None
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak is not None else None


def _reference(args, config, prompts: np.ndarray, device: str) -> dict:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    hf_config = T5Config.from_dict(hf_config_from_model_config(config))  # dropout 0
    torch.manual_seed(args.seed)
    model = T5ForConditionalGeneration(hf_config).to(device).eval()
    if args.dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    ids = torch.tensor(prompts, device=device)
    mask = torch.ones_like(ids)
    n_prompts, per_prompt = layout(args)
    rows = n_prompts * per_prompt
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
              max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
              num_return_sequences=per_prompt)

    def call() -> tuple[float, int]:
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, **kw)
            isolation.synchronize(device)
            dt = time.perf_counter() - t0
        return dt, int(out.shape[0] * (out.shape[1] - 1))  # minus the decoder start token

    call()  # warm-up (allocator, lazy init)
    times, n_tokens = [], 0
    for _ in range(args.repeats):
        dt, n_tokens = call()
        if n_tokens != rows * args.new_tokens:
            raise RuntimeError(f"HF generated {n_tokens} tokens, expected "
                               f"{rows * args.new_tokens}")
        times.append(dt)
    steady = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"tokens_per_s": n_tokens / steady, "seconds_per_call": steady,
            "torch_threads": torch.get_num_threads(), "device": device,
            "peak_device_memory_mb": peak}


def run(args) -> dict:
    _check(args)
    config = model_preset(args.size, dropout_rate=0.0, dtype=args.dtype)
    prompts = _prompts(args, config.vocab_size)
    device = isolation.resolve_reference_device(args)
    n_prompts, per_prompt = layout(args)
    ours = _ours(args, config, prompts)
    steps = args.new_tokens
    read = ours["bytes_per_step"]
    result = {"benchmark": "sample", "size": args.size, "problems": n_prompts,
              "samples_per_problem": per_prompt, "rows": n_prompts * per_prompt,
              "batch": n_prompts * per_prompt, "src_len": args.src_len,
              "new_tokens": args.new_tokens, "dtype": args.dtype,
              "tokens_per_s": ours["tokens_per_s"], "seconds_per_call": ours["seconds_per_call"],
              "seconds_per_step": ours["seconds_per_call"] / steps,
              "compile_s": ours["compile_s"], "devices": ours["devices"],
              "backend": ours["backend"], "rows_per_kv_copy": ours["rows_per_kv_copy"],
              "bytes_per_step": read, "mb_per_step": sum(read.values()) / 2**20,
              "peak_device_memory_mb": ours["peak_device_memory_mb"],
              "peak_host_memory_mb": isolation.peak_rss_mb(),
              "cpu_count": os.cpu_count()}
    peak_bw = PEAK_BANDWIDTH.get(ours["device_kind"]) if ours["backend"] != "cpu" else None
    if peak_bw:  # bytes one step reads / step time, against the chip's bandwidth
        result["bandwidth_fraction"] = (sum(read.values()) / result["seconds_per_step"]
                                        / (peak_bw * ours["devices"]))
    if "filtered_seconds_per_call" in ours:
        result.update(top_p=args.top_p, top_k=args.top_k,
                      filtered_tokens_per_s=ours["filtered_tokens_per_s"],
                      filtered_seconds_per_step=ours["filtered_seconds_per_call"] / steps,
                      filtered_step_ratio=(ours["filtered_seconds_per_call"]
                                           / ours["seconds_per_call"]))
    if not args.no_reference:
        try:
            ref = isolation.run_in_fresh_process(_reference, isolation.plain_args(args),
                                               config, prompts, device)
        except ImportError as e:
            result["reference_error"] = f"HF reference unavailable: {e}"
        else:
            result["reference_tokens_per_s"] = ref["tokens_per_s"]
            result["reference_seconds_per_call"] = ref["seconds_per_call"]
            result["reference_torch_threads"] = ref["torch_threads"]
            result["reference_device"] = ref["device"]
            result["reference_peak_host_memory_mb"] = ref["peak_host_memory_mb"]
            result["reference_peak_device_memory_mb"] = ref["peak_device_memory_mb"]
            result["ratio"] = ours["tokens_per_s"] / ref["tokens_per_s"]
    return result

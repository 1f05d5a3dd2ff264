"""`coderl benchmark sample`: generated tokens/s of the jitted sampler vs HF `generate`.

Both run random-weight models of the same shape, the same batch of random prompts of `--src-len`
tokens, and are forced to generate exactly `--new-tokens` tokens per row (EOS ignored; HF:
`min_new_tokens = max_new_tokens`), sampling at temperature 1 without filtering; HF runs in a
process of its own (see `isolation`). Our figure is
end to end per call (encoder, cache set-up, decode loop, copy back to the host); compile time is
measured separately: the tracing, lowering and XLA compile durations JAX reports (its
`jax.monitoring` events) during the first call, which also warms up.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from coderl_jax.benchmarks import isolation
from coderl_jax.config import model_preset
from coderl_jax.convert import hf_config_from_model_config
from coderl_jax.errors import UserError

# jax.monitoring duration events that make up compile time (tracing, lowering, XLA compile)
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def add_arguments(p) -> None:
    p.add_argument("--size", default="small", choices=["tiny", "small", "base", "large"],
                   help="model shape (docs/SPEC.md §7)")
    p.add_argument("--batch", type=int, default=8, help="rows sampled together")
    p.add_argument("--src-len", type=int, default=256, help="prompt tokens")
    p.add_argument("--new-tokens", type=int, default=128, help="generated tokens per row")
    p.add_argument("--repeats", type=int, default=3, help="timed calls (median reported)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype of both sides (ours: bf16 matmul weights and KV cache, "
                        "float32 logits; HF: the model cast with .to(torch.bfloat16))")
    isolation.add_device_argument(p)
    p.add_argument("--no-reference", action="store_true", help="skip HF generate")
    p.add_argument("--seed", type=int, default=0)


def _check(args) -> None:
    for flag, v in (("--batch", args.batch), ("--src-len", args.src_len),
                    ("--new-tokens", args.new_tokens), ("--repeats", args.repeats)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if args.src_len < 2:
        raise UserError("--src-len must be >= 2")


def _prompts(args, vocab: int) -> np.ndarray:
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(5, min(vocab, 32000), size=(args.batch, args.src_len), dtype=np.int64)
    ids[:, 0] = 1  # <s>
    ids[:, -1] = 2  # </s>
    return ids


def _ours(args, config, prompts: np.ndarray) -> dict:
    import jax

    from coderl_jax.inference.decoding import SamplingConfig
    from coderl_jax.inference.sampler import Sampler, SampleRequest
    from coderl_jax.models import t5
    from coderl_jax.partitioning import make_mesh

    params = t5.init_params(config, jax.random.PRNGKey(args.seed))
    sampler = Sampler(config, params, mesh=make_mesh(), batch_size=args.batch,
                      max_new_tokens=args.new_tokens, max_source_len=args.src_len,
                      sampling=SamplingConfig(temperature=1.0), stop_at_eos=False,
                      source_buckets=(args.src_len,))
    requests = [SampleRequest(f"bench{i}", row.tolist(), (0,)) for i, row in enumerate(prompts)]

    def call(seed: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        samples = list(sampler.sample(requests, seed=seed))
        dt = time.perf_counter() - t0
        return dt, sum(len(s.output_ids) for s in samples)

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
        if n != args.batch * args.new_tokens:
            raise RuntimeError(f"sampler produced {n} tokens, expected "
                               f"{args.batch * args.new_tokens}")
        times.append(dt)
    steady = statistics.median(times)
    return {"tokens_per_s": n_tokens / steady, "seconds_per_call": steady,
            "compile_s": compile_s, "devices": len(jax.devices()),
            "backend": jax.default_backend()}


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
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
              max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)

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
        if n_tokens != args.batch * args.new_tokens:
            raise RuntimeError(f"HF generated {n_tokens} tokens, expected "
                               f"{args.batch * args.new_tokens}")
        times.append(dt)
    steady = statistics.median(times)
    return {"tokens_per_s": n_tokens / steady, "seconds_per_call": steady,
            "torch_threads": torch.get_num_threads(), "device": device}


def run(args) -> dict:
    _check(args)
    config = model_preset(args.size, dropout_rate=0.0, dtype=args.dtype)
    prompts = _prompts(args, config.vocab_size)
    device = isolation.resolve_reference_device(args)
    ours = _ours(args, config, prompts)
    result = {"benchmark": "sample", "size": args.size, "batch": args.batch,
              "src_len": args.src_len, "new_tokens": args.new_tokens, "dtype": args.dtype,
              "tokens_per_s": ours["tokens_per_s"], "seconds_per_call": ours["seconds_per_call"],
              "compile_s": ours["compile_s"], "devices": ours["devices"],
              "backend": ours["backend"],
              "cpu_count": os.cpu_count()}
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
            result["ratio"] = ours["tokens_per_s"] / ref["tokens_per_s"]
    return result

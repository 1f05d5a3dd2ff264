"""`coderl benchmark train`: training tokens/s (forward + backward + AdamW) vs HF PyTorch T5.

Both sides train a random-weight model of the same shape (SPEC §7) on the same random batch of
`--batch` rows of `--src-len` source + `--tgt-len` target tokens (every token real), with dropout
0.1, AdamW and global-norm clipping at 1.0. Tokens/s counts source + target tokens per second of
the median of `--steps` timed steps after one untimed warm-up step (compilation is reported
separately; the median, because step times on a shared machine wander by 20-30%). The
reference is `transformers.T5ForConditionalGeneration` + `torch.optim.AdamW`, run in a process
of its own (see `isolation`) when torch is installed, at the same precision by default: float32,
or for `--dtype bfloat16` float32 weights with the forward pass under `torch.autocast(bfloat16)`
(the PyTorch form of our bf16-compute / f32-parameter recipe); `--reference-dtype` overrides it.
Peak host memory is each process's max RSS.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from coderl_jax.benchmarks import isolation
from coderl_jax.config import MeshConfig, OptimizerConfig, model_preset
from coderl_jax.errors import UserError
from coderl_jax.hf_config import hf_config_from_model_config


def add_arguments(p) -> None:
    p.add_argument("--size", default="small", choices=["tiny", "small", "base", "large"],
                   help="model shape (docs/SPEC.md §7)")
    p.add_argument("--batch", type=int, default=8, help="rows per step")
    p.add_argument("--src-len", type=int, default=256, help="source tokens per row")
    p.add_argument("--tgt-len", type=int, default=256, help="target tokens per row")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="our compute dtype (parameters and optimizer state stay float32)")
    p.add_argument("--reference-dtype", default="same", choices=["same", "float32", "bfloat16"],
                   help="HF's compute dtype (bfloat16: torch.autocast); 'same' follows --dtype")
    isolation.add_device_argument(p)
    p.add_argument("--remat", action="store_true", help="rematerialise layers (ours)")
    p.add_argument("--no-reference", action="store_true", help="skip HF PyTorch")
    p.add_argument("--seed", type=int, default=0)


def _batch(args, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    b, s, t = args.batch, args.src_len, args.tgt_len
    return {"encoder_ids": rng.integers(3, vocab, (b, s)).astype(np.int32),
            "encoder_mask": np.ones((b, s), np.int32),
            "targets": rng.integers(3, vocab, (b, t)).astype(np.int32),
            "target_mask": np.ones((b, t), np.int32)}


def _ours(args, config, batch) -> dict:
    import jax

    from coderl_jax import partitioning
    from coderl_jax.models import t5
    from coderl_jax.train import state as st, steps

    mesh = partitioning.make_mesh(MeshConfig())
    if args.batch % partitioning.batch_size_divisor(mesh):
        raise UserError(f"--batch {args.batch} must be a multiple of the {mesh.size} devices")
    tx, schedule = st.make_optimizer(OptimizerConfig(learning_rate=1e-4, schedule="constant"),
                                     args.steps + 1)
    state, shardings = st.create_train_state(lambda r: t5.init_params(config, r),
                                             t5.param_logical_axes(config), tx, mesh,
                                             jax.random.key(args.seed))
    opts = steps.StepOptions(dropout=True)
    step = steps.make_train_step(steps.actor_objective(t5.T5(config), opts), tx, schedule, opts,
                                 mesh, shardings)
    placed = partitioning.shard_batch(batch, mesh)
    rng = jax.random.key(args.seed + 1)
    t0 = time.perf_counter()
    state, metrics = step(state, placed, rng)
    first_loss = float(metrics["loss"])  # waits for the first (compiling) step
    first = time.perf_counter() - t0
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, placed, jax.random.fold_in(rng, i + 1))
        last_loss = float(metrics["loss"])  # waits for the step
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"seconds_per_step": seconds, "compile_seconds": max(first - seconds, 0.0),
            "first_loss": first_loss, "last_loss": last_loss, "devices": mesh.size,
            "params": st.param_count(state.params), "backend": jax.default_backend()}


def _reference(args, config, batch, dtype: str, device: str) -> dict:
    import contextlib

    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(args.seed)
    hf = T5Config.from_dict(hf_config_from_model_config(config))  # as `coderl convert to-hf` writes
    model = T5ForConditionalGeneration(hf).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    names = {"input_ids": "encoder_ids", "attention_mask": "encoder_mask", "labels": "targets",
             "decoder_attention_mask": "target_mask"}
    inputs = {k: torch.from_numpy(batch[v].astype(np.int64)).to(device) for k, v in names.items()}

    def autocast():
        if dtype == "bfloat16":
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> float:
        with autocast():
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())  # waits for the device

    first_loss = step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        last_loss = step()
        times.append(time.perf_counter() - t0)
    return {"seconds_per_step": statistics.median(times), "first_loss": first_loss,
            "last_loss": last_loss, "threads": torch.get_num_threads(), "device": device}


def run(args) -> dict:
    for flag, v in (("--batch", args.batch), ("--src-len", args.src_len),
                    ("--tgt-len", args.tgt_len), ("--steps", args.steps)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    config = model_preset(args.size, dtype=args.dtype, remat=bool(args.remat))
    batch = _batch(args, config.vocab_size)
    tokens = args.batch * (args.src_len + args.tgt_len)
    device = isolation.resolve_reference_device(args)
    ours = _ours(args, config, batch)
    result = {"size": args.size, "batch": args.batch, "src_len": args.src_len,
              "tgt_len": args.tgt_len, "steps": args.steps, "dtype": args.dtype,
              "params": ours["params"], "devices": ours["devices"], "backend": ours["backend"],
              "tokens_per_s": tokens / ours["seconds_per_step"],
              "seconds_per_step": ours["seconds_per_step"],
              "compile_seconds": ours["compile_seconds"],
              "first_loss": ours["first_loss"], "last_loss": ours["last_loss"],
              "peak_host_memory_mb": isolation.peak_rss_mb()}
    if args.no_reference:
        return result
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        result["reference"] = "torch/transformers not installed"
        return result
    ref_dtype = args.dtype if args.reference_dtype == "same" else args.reference_dtype
    ref = isolation.run_in_fresh_process(_reference, isolation.plain_args(args), config,
                                           batch, ref_dtype, device)
    result.update({"reference_dtype": ref_dtype, "reference_device": device,
                   "reference_tokens_per_s": tokens / ref["seconds_per_step"],
                   "reference_seconds_per_step": ref["seconds_per_step"],
                   "reference_first_loss": ref["first_loss"],
                   "reference_last_loss": ref["last_loss"],
                   "reference_threads": ref["threads"],
                   "ratio": ref["seconds_per_step"] / ours["seconds_per_step"],
                   "reference_peak_host_memory_mb": ref["peak_host_memory_mb"]})
    return result

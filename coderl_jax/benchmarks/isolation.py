"""Run a benchmark's reference side in a fresh Python process.

Measured here: HF PyTorch training run after our JAX steps in the same process took 25-35% longer
per step than in a process of its own (float32 7.18 vs 5.72 s, bfloat16 autocast 5.28 vs 3.89 s
at codet5-small, batch 8, 256+256 tokens, on 2 cores), which would flatter our ratio. A spawned
process imports neither JAX nor our state, so each side gets the machine as a user would.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from coderl_jax.errors import UserError


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB: Linux's VmHWM (ru_maxrss survives exec, so
    a spawned process would report its parent's peak), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _call_and_measure(fn: Callable[..., dict], args: tuple) -> dict:
    result = fn(*args)
    return {**result, "peak_host_memory_mb": peak_rss_mb()}


def run_in_fresh_process(fn: Callable[..., dict], *args: Any) -> dict:
    """`fn(*args)` (a module-level function returning a dict) in a spawned process; the dict comes
    back with that process's `peak_host_memory_mb` added. Exceptions re-raise here."""
    with ProcessPoolExecutor(max_workers=1,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_call_and_measure, fn, args).result()


def plain_args(args: argparse.Namespace) -> argparse.Namespace:
    """`args` without the callables the CLI stores in it (they do not pickle)."""
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if not callable(v)})


def add_device_argument(p) -> None:
    p.add_argument("--reference-device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where HF PyTorch runs; auto: cuda when JAX runs on a GPU, else cpu")


def reference_device(requested: str, jax_backend: str) -> str:
    """The torch device for the reference: the hardware our side ran on, unless asked."""
    if requested != "auto":
        return requested
    return "cuda" if jax_backend == "gpu" else "cpu"


def check_torch_device(device: str) -> dict:
    """A one-line error when the reference is asked to run on CUDA that torch cannot see (run
    it in a fresh process before our side, so a bad flag fails at once)."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--reference-device cuda: this torch build sees no CUDA device")
    return {}


def resolve_reference_device(args: argparse.Namespace) -> str:
    """The reference's torch device for a benchmark's `args`, checked up front when it is CUDA
    (torch missing altogether is reported where the reference would run)."""
    import jax
    device = reference_device(args.reference_device, jax.default_backend())
    if device == "cuda" and not args.no_reference:
        try:
            run_in_fresh_process(check_torch_device, device)
        except ImportError:
            pass
    return device


def synchronize(device: str) -> None:
    """Wait for queued torch work on `device` (CUDA kernels run asynchronously)."""
    if device == "cuda":
        import torch
        torch.cuda.synchronize()

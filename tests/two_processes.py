"""Run one test worker script as 2 JAX processes x 2 CPU devices (gloo over 127.0.0.1)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(script: str, args: list[str], timeout: float) -> list[str]:
    """Each process's combined output, after asserting both exited 0 (neither left running)."""
    port = free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
                   JAX_PLATFORMS="cpu", CODERL_MULTIHOST="1",
                   CODERL_COORDINATOR=f"127.0.0.1:{port}", CODERL_NUM_PROCESSES="2",
                   CODERL_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, str(TESTS / script), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    return outputs

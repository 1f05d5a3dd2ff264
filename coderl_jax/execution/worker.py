"""A pool worker process: `python -m coderl_jax.execution.worker CONFIG_JSON`.

CPU only, JAX never imported. Pre-imports the modules programs use, forks its sandbox fork server
(before it has seen any test, so sandboxes cannot find expected outputs in memory), then serves
jobs from the pool over stdin/stdout as length-prefixed JSON frames:

  in:  {"op": "problem", "key": K, "spec": {...}}      (sent once per problem and worker)
       {"op": "job", "id": N, "key": K, "code": str, "stop": bool}
  out: {"id": N, "result": {...}}  or  {"id": N, "error": str}

The judge itself is bounded too: replies are decoded with `codec`'s bounds, each program's judging
has a CPU budget (`judge_cpu_s`, default max(2 s, 3 x the test timeout); past it the program gets
-1 "judgetimeout"), and once the fork server exists the worker's address space is capped
(`judge_memory_mb` above what it uses then), so a memory blow-up is a MemoryError, not the host's
OOM killer. Anything escaping a program's judging (MemoryError, RecursionError, a bug) gives that
program -1 "judgeerror" and the worker keeps serving; the pool does not cache either outcome.
"""
from __future__ import annotations

import json
import os
import resource
import struct
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"


def _read_frame(stream) -> dict | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack(">I", head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return json.loads(data)


def _write_frame(stream, obj) -> None:
    data = json.dumps(obj).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


JUDGE_MEMORY_MB = 4096  # address space the judge may add once started (specs, replies, tests)


def _judge_error(etype: str, e: BaseException) -> dict:
    return {"result": -1, "error_type": etype, "tests": [-1], "seconds": 0.0,
            "error_message": f"{type(e).__name__}: {e}"[:1000], "error_line": None}


def _cap_memory(extra_mb: int) -> None:
    """RLIMIT_AS (soft) = what the worker maps now + extra_mb; the fork server is not affected."""
    from coderl_jax.execution.sandbox import _vm_size

    if extra_mb <= 0:
        return
    limit = _vm_size() + (extra_mb << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or limit <= hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str]) -> int:
    config = json.loads(argv[0]) if argv else {}
    if config.get("cpu") is not None:  # (see pool.worker_cpus); inherited by all it forks
        try:
            os.sched_setaffinity(0, {int(config["cpu"])})
        except (OSError, ValueError):
            pass
    from coderl_jax.execution import cgroups, runtime, sandbox, seccomp

    sandbox.sc.prctl(sandbox.sc.PR_SET_PDEATHSIG, 9)
    sandbox.sc.set_name("coderl-worker")  # for ps and perf, as coderl-forksrv / coderl-sandbox
    runtime.preload()
    mode = config.get("isolation", "auto")
    namespaces = sandbox.namespaces_available() if mode in ("auto", "namespaces") else False
    if mode == "namespaces" and not namespaces:
        print("coderl worker: namespaces requested but unavailable", file=sys.stderr)
        return 3
    limits = sandbox.Limits(**config.get("limits", {}))
    groups = []
    if namespaces:  # used in turn by consecutive sandboxes (see sandbox.zygote_main)
        for slot in range(3):
            g = cgroups.SandboxGroup.create(
                f"{cgroups.PREFIX}{os.getpid()}-{slot}",
                memory_bytes=(limits.memory_mb + limits.scratch_mb + 512) << 20,
                max_pids=limits.nproc + 8)
            if g is None:
                for made in groups:
                    made.remove()
                groups = []
                break
            groups.append(g)
    packages = tuple(config.get("packages") or sandbox.rootfs.DEFAULT_PACKAGES)
    zygote = sandbox.Zygote(namespaces, groups, packages)
    from coderl_jax.execution.checkers import JudgeTimeout, ProgramRun

    sys.set_int_max_str_digits(4300)  # json.loads of a reply: no huge (quadratic) int literals
    harness = config.get("harness", "real")
    timeout = float(config.get("timeout", 4.0))
    wall = float(config.get("wall_timeout", 0) or (5 * timeout + 1))
    judge_cpu = float(config.get("judge_cpu_s") or max(2.0, 3 * timeout))
    _cap_memory(int(config.get("judge_memory_mb", JUDGE_MEMORY_MB)))
    specs: dict[str, dict] = {}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    isolation = {"mode": "namespaces" if namespaces else "basic",
                 "filesystem": "allow-list" if namespaces else "none",
                 "cpu_accounting": f"cgroup {groups[0].kind}" if groups else "proc",
                 "memory_cgroup": bool(groups and "memory" in groups[0].dirs),
                 "seccomp": seccomp.available(), "packages": list(packages)}
    _write_frame(stdout, {"ready": True, "namespaces": namespaces, "isolation": isolation})
    try:
        while True:
            msg = _read_frame(stdin)
            if msg is None:
                return 0
            if msg["op"] == "problem":
                specs[msg["key"]] = msg["spec"]
                continue
            run = None
            try:
                run = ProgramRun(specs[msg["key"]], msg["code"],
                                 lambda stdio=None: zygote.spawn(limits, stdio=stdio),
                                 timeout=timeout, wall_timeout=wall,
                                 stop_at_first_failure=msg.get("stop", True),
                                 harness=harness, output_cap=limits.output_cap,
                                 judge_cpu=judge_cpu)
                result = run.run()
            except JudgeTimeout as e:
                result = _judge_error("judgetimeout", e)
            except (RecursionError, MemoryError) as e:
                result = _judge_error("judgeerror", e)
            except (RuntimeError, OSError) as e:  # the fork server is gone: let the pool restart us
                _write_frame(stdout, {"id": msg["id"], "error": f"{type(e).__name__}: {e}"})
                return 4
            except Exception as e:  # noqa: BLE001 - a judge bug must not take the worker down
                result = _judge_error("judgeerror", e)
            phases = {k: round(v, 6) for k, v in run.phases.items()} if run is not None else {}
            _write_frame(stdout, {"id": msg["id"], "result": result, "phases": phases})
    finally:
        zygote.close()
        for g in groups:
            g.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A persistent pool of sandbox workers with a synchronous and an asynchronous API and a cache.

    with ExecutionPool(workers=2, timeout=4.0) as pool:
        results = pool.run({p.problem_id: p for p in problems}, rows)     # blocks
        future = pool.submit(problems_by_id, rows)                        # returns at once
        ...                                                               # e.g. sample on device
        results = future.result()

Each worker is a separate CPU-only interpreter (`coderl_jax.execution.worker`; JAX is never
imported there) that judges programs one at a time, each in a fresh sandbox forked from a warm
fork server. Workers are recycled after `max_jobs_per_worker` programs and restarted on any
anomaly (a crash, a broken pipe); the job is then retried once on a fresh worker.
With at least as many CPUs as workers, each worker is bound to a CPU of its own, with its
fork server and sandboxes (`pin_cpus`; see `worker_cpus`).
`harness` chooses how standard-input programs are judged: "real" (default: each test runs the
program as a process with real stdin/stdout, exit status and signals count) or "coderl"
(CodeRL's in-process harness and its quirks); see checkers.py and runtime.py.
Identical (problem, normalized code, options) pairs run once: later ones, in the same batch or
in any later one, are served from an LRU cache (`cache_hits` counts them). Programs whose outcome
is random are therefore judged by their first run.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time

from coderl_jax.execution.checkers import check_harness, problem_spec
from coderl_jax.execution.sandbox import Limits, minimal_environment

_warned_basic = False


def _warn_basic() -> None:
    global _warned_basic
    _warned_basic = True
    import logging

    logging.getLogger(__name__).warning(
        "sandbox runs in 'basic' isolation (not root, or namespaces refused): programs can read "
        "the host's files and share IPC; use it on development machines only")

_RESULT_KEYS = ("result", "error_type", "tests", "seconds", "error_message", "error_line")
# Outcomes of the harness rather than of the program (a crashed worker, the judge's own failure or
# CPU budget): never cached, so a later identical program is judged afresh.
_UNCACHED = frozenset({"sandboxerror", "judgeerror", "judgetimeout"})


def normalize_code(code: str) -> str:
    """The cache's notion of "the same program": line endings and trailing blanks ignored."""
    return code.replace("\r\n", "\n").rstrip() + "\n"


def _error_result(message: str) -> dict:
    return {"result": -1, "error_type": "sandboxerror", "tests": [], "seconds": 0.0,
            "error_message": message[:1000], "error_line": None}


def worker_cpus(workers: int, pin: bool | None) -> list[int | None]:
    """The CPU each worker (with its fork server and sandboxes) is bound to, or None for each
    when they are not bound. `pin` None: bind when there are at least as many CPUs (those this
    process may use) as workers. A worker's judge, fork server and program then hand off to
    each other on one CPU: no cross-CPU wake-ups or TLB shoot-downs, a warm cache, and the
    next sandbox forked and the last one torn down between the program's turns; measured on
    a 2-CPU VM, a light MBPP program costs ~20% less CPU this way. Several pools on one host
    each bind from the first CPU on: pass False there (or leave them fewer CPUs)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = []
    if pin is False or not allowed or (pin is None and workers > len(allowed)):
        return [None] * workers
    return [allowed[i % len(allowed)] for i in range(workers)]


class _WorkerDied(Exception):
    pass


class _Worker:
    """The pool's handle on one worker process."""

    def __init__(self, config: dict, max_jobs: int):
        self.config, self.max_jobs = config, max_jobs
        self.proc: subprocess.Popen | None = None
        self.known: set[str] = set()
        self.phases: dict = {}  # wall seconds by phase of the last program judged
        self.jobs = 0
        self.namespaces: bool | None = None
        self.isolation: dict | None = None

    def start(self) -> None:
        # A fixed minimal environment (no launcher secrets to recover from memory) and a new
        # session without a controlling terminal.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coderl_jax.execution.worker", json.dumps(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=minimal_environment(), cwd="/",
            close_fds=True, bufsize=0, start_new_session=True)
        self.known, self.jobs = set(), 0
        self._buf = b""
        hello = self._read(time.monotonic() + 120)
        self.namespaces = bool(hello.get("namespaces"))
        self.isolation = hello.get("isolation")
        if not self.namespaces and not _warned_basic:
            _warn_basic()

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _WorkerDied("worker stopped answering")
            chunk = os.read(fd, max(1 << 16, n - len(self._buf)))
            if not chunk:
                raise _WorkerDied("worker exited")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _read(self, deadline: float) -> dict:
        (n,) = struct.unpack(">I", self._read_exact(4, deadline))
        return json.loads(self._read_exact(n, deadline))

    def _write(self, obj) -> None:
        data = json.dumps(obj).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise _WorkerDied(str(e)) from e

    def run(self, key: str, spec: dict, code: str, stop: bool, deadline: float) -> dict:
        if self.proc is None or self.proc.poll() is not None or self.jobs >= self.max_jobs:
            self.stop()
            self.start()
        if key not in self.known:
            self._write({"op": "problem", "key": key, "spec": spec})
            self.known.add(key)
        self.jobs += 1
        self.phases = {}
        self._write({"op": "job", "id": self.jobs, "key": key, "code": code, "stop": stop})
        reply = self._read(deadline)
        if "result" not in reply:
            raise _WorkerDied(str(reply.get("error", "worker error")))
        self.phases = reply.get("phases") if isinstance(reply.get("phases"), dict) else {}
        return reply["result"]

    def hang_up(self) -> None:
        """Close the worker's input: it finishes and exits (`stop` waits for it)."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # its fork server and sandbox follow (parent-death signals)
            proc.wait()
        proc.stdout.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        self.stop()


@dataclasses.dataclass
class _Batch:
    future: concurrent.futures.Future
    results: list
    remaining: int
    progress: object = None


class ExecutionPool:
    """Persistent sandbox workers; see the module docstring."""

    def __init__(self, workers: int = 2, timeout: float = 4.0, *, wall_timeout: float | None = None,
                 limits: Limits | None = None, max_jobs_per_worker: int = 2000,
                 cache_size: int = 100_000, isolation: str = "auto",
                 packages: tuple[str, ...] | None = None, harness: str = "real",
                 pin_cpus: bool | None = None):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if pin_cpus not in (None, True, False):
            raise ValueError(f"pin_cpus must be True, False or None, not {pin_cpus!r}")
        if isolation not in ("auto", "namespaces", "basic"):
            raise ValueError(f"isolation must be auto, namespaces or basic, not {isolation!r}")

        self.harness = check_harness(harness)
        self.config = {"timeout": timeout, "wall_timeout": wall_timeout or 0,
                       "limits": dataclasses.asdict(limits or Limits()), "isolation": isolation,
                       "packages": list(packages) if packages is not None else None,
                       "harness": harness}
        self.timeout = timeout
        self._wall = wall_timeout or (5 * timeout + 1)
        cpus = worker_cpus(workers, pin_cpus)
        self._workers = [_Worker(self.config if cpu is None else dict(self.config, cpu=cpu),
                                 max_jobs_per_worker) for cpu in cpus]
        self._tasks: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._cache_size = cache_size
        self._inflight: dict[str, list] = {}
        self._keys: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.restarts = 0
        self.judged = 0
        self.phase_seconds: collections.Counter = collections.Counter()
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, args=(w,), daemon=True,
                                          name=f"coderl-exec-{i}")
                         for i, w in enumerate(self._workers)]
        for t in self._threads:
            t.start()

    # -- public API --------------------------------------------------------------------------------
    def submit(self, problems_by_id: dict, rows: list[dict], example_tests: bool = False,
               stop_at_first_failure: bool = True, progress=None) -> concurrent.futures.Future:
        """Queue every row ({"problem_id", "code"}) and return a Future of the result dicts, in
        row order. `progress`, if given, is called with the number of rows just finished."""
        if self._closed:
            raise RuntimeError("pool is closed")
        future: concurrent.futures.Future = concurrent.futures.Future()
        batch = _Batch(future, [None] * len(rows), len(rows), progress)
        jobs = []
        for i, row in enumerate(rows):
            pid = str(row["problem_id"])
            if pid not in problems_by_id:
                raise KeyError(f"unknown problem_id {pid!r}")
            pkey, spec = self._problem_key(problems_by_id[pid], example_tests)
            code = row["code"] if isinstance(row.get("code"), str) else ""
            key = hashlib.sha256(json.dumps(
                [pkey, normalize_code(code), stop_at_first_failure, self.harness]).encode()
            ).hexdigest()
            jobs.append((i, key, pkey, spec, code))
        if not rows:
            future.set_result([])
            return future
        for i, key, pkey, spec, code in jobs:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    self.cache_hits += 1
                elif key in self._inflight:
                    self._inflight[key].append((batch, i))
                    self.cache_hits += 1
                    continue
                else:
                    self._inflight[key] = [(batch, i)]
                    self.cache_misses += 1
            if cached is not None:
                self._deliver(batch, i, cached)
            else:
                self._tasks.put((key, pkey, spec, code, stop_at_first_failure))
        return future

    def run(self, problems_by_id: dict, rows: list[dict], example_tests: bool = False,
            stop_at_first_failure: bool = True, progress=None) -> list[dict]:
        """Synchronous `submit(...).result()`."""
        return self.submit(problems_by_id, rows, example_tests, stop_at_first_failure,
                           progress).result()

    def run_one(self, problem, code: str, **kwargs) -> dict:
        return self.run({str(problem.problem_id): problem},
                        [{"problem_id": problem.problem_id, "code": code}], **kwargs)[0]

    @property
    def namespaces(self) -> bool | None:
        """Whether the workers run sandboxes in namespaces (None before the first program)."""
        states = {w.namespaces for w in self._workers if w.namespaces is not None}
        return states.pop() if len(states) == 1 else None

    @property
    def isolation(self) -> dict | None:
        """How the sandboxes are isolated, as the first started worker reports it: mode
        ("namespaces" or "basic"), filesystem, cpu_accounting, memory_cgroup, seccomp, packages."""
        for w in self._workers:
            if w.isolation is not None:
                return dict(w.isolation)
        return None

    def stats(self) -> dict:
        """Cache hits and misses, worker restarts, programs judged, and the wall seconds the
        workers spent in each phase of judging them (spawn, load, replies, compile, end, judge;
        see `ProgramRun.run`)."""
        with self._lock:
            return {"cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
                    "worker_restarts": self.restarts, "programs_judged": self.judged,
                    "phase_seconds": {k: round(v, 6) for k, v in self.phase_seconds.items()}}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join()
        for w in self._workers:  # all see their end at once and wind down side by side
            w.hang_up()
        for w in self._workers:
            w.stop()

    def __enter__(self) -> "ExecutionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- internals ---------------------------------------------------------------------------------
    def _problem_key(self, problem, example_tests: bool) -> tuple[str, dict]:
        memo_key = (id(problem), example_tests)
        with self._lock:
            hit = self._keys.get(memo_key)
            if hit is not None and hit[0] is problem:
                return hit[1], hit[2]
        spec = problem_spec(problem, example_tests)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        key = f"{problem.source}:{problem.problem_id}:{digest}"
        with self._lock:
            self._keys[memo_key] = (problem, key, spec)
            if len(self._keys) > 8192:
                self._keys.popitem(last=False)
        return key, spec

    def _serve(self, worker: _Worker) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                # stopped from this thread: the worker's parent-death signal follows the thread
                # that started it, so it must not outlive it
                worker.stop()
                return
            key, pkey, spec, code, stop = task
            result = None
            n_tests = max(len(spec["tests"].get("asserts") or spec["tests"].get("inputs") or ()), 1)
            budget = self._wall * (n_tests + 1) + 60  # far beyond any honest judging time
            for attempt in range(2):
                try:
                    result = worker.run(pkey, spec, code, stop, time.monotonic() + budget)
                    break
                except (_WorkerDied, OSError, ValueError) as e:
                    with self._lock:
                        self.restarts += 1
                    worker.kill()
                    if attempt == 1:
                        result = _error_result(f"sandbox worker failed: {e}")
            result = {k: result.get(k) for k in _RESULT_KEYS}
            with self._lock:
                self.judged += 1
                for name, seconds in getattr(worker, "phases", {}).items():
                    if isinstance(seconds, (int, float)):
                        self.phase_seconds[str(name)] += seconds
                if result["error_type"] not in _UNCACHED:
                    self._cache[key] = result
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                waiters = self._inflight.pop(key, [])
            for batch, i in waiters:
                self._deliver(batch, i, result)

    def _deliver(self, batch: _Batch, i: int, result: dict) -> None:
        batch.results[i] = dict(result, tests=list(result["tests"]))
        with self._lock:
            batch.remaining -= 1
            done = batch.remaining == 0
        if batch.progress is not None:
            try:
                batch.progress(1)
            except Exception:  # noqa: BLE001 - a progress bar must not break execution
                pass
        if done:
            batch.future.set_result(batch.results)

"""Overlap host-side execution with device work in online RL.

The online loop has three phases per batch: sample programs (device), execute them in the
sandbox (host processes), learn from the outcomes (device). Run serially, the device idles while
the sandbox works. `ExecutionQueue` keeps up to `depth` executions in flight: while the sandbox
runs batch k, the device learns from batch k-1 and samples batch k+1. Batches are therefore
sampled from parameters at most `depth` updates old (documented, and `depth=0` is the serial
loop for comparison).

The queue measures where the host thread waited: `wait_s` is time blocked on execution results
with no device work issued, so `idle_fraction = wait_s / total_s` bounds the device's idle time.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from concurrent.futures import Future
from typing import Any, Iterator


@dataclasses.dataclass
class OverlapStats:
    batches: int = 0
    total_s: float = 0.0
    wait_s: float = 0.0  # host blocked on the sandbox, device given nothing to do
    sample_s: float = 0.0
    execute_s: float = 0.0  # wall time from submitting each batch to its results

    @property
    def idle_fraction(self) -> float:
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["idle_fraction"] = self.idle_fraction
        return d


class ExecutionQueue:
    """Executions in flight for a batch source the training loop drives (pulls batches from).

    The source `launch`es (sampled batch, Future of its execution) pairs and `pop`s the oldest
    when the loop wants a batch; it keeps `depth` executions in flight beyond the one it is
    about to consume (`wanted()` says how many to launch now), so with depth >= 1 the sandbox
    runs batch k while the device learns from k-1 and samples k+1. `stats.wait_s` is the time
    `pop` blocked on the sandbox; `stats.total_s` is set by the source (`finish`).
    """

    def __init__(self, depth: int = 1):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.depth = int(depth)
        self.pending: collections.deque[tuple] = collections.deque()
        self.stats = OverlapStats()
        self._start: float | None = None

    def wanted(self) -> int:
        """Batches to launch before popping: fill up to depth + 1 in flight."""
        return max(self.depth + 1 - len(self.pending), 0)

    def launch(self, item: Any, future: Future, sample_s: float = 0.0) -> None:
        if self._start is None:
            self._start = time.perf_counter() - sample_s
        self.stats.sample_s += sample_s
        submitted = time.perf_counter()
        done: list[float] = []
        future.add_done_callback(lambda _: done.append(time.perf_counter()))
        self.pending.append((item, future, submitted, done))

    def pop(self) -> tuple[Any, Any]:
        """(item, its execution results), blocking on the oldest execution."""
        item, fut, submitted, done = self.pending.popleft()
        t0 = time.perf_counter()
        results = fut.result()
        now = time.perf_counter()
        self.stats.wait_s += now - t0
        self.stats.execute_s += (done[0] if done else now) - submitted
        self.stats.batches += 1
        return item, results

    def restart_window(self) -> None:
        """Measure from now on (e.g. after a first iteration that compiled everything)."""
        self.stats = OverlapStats()
        self._start = time.perf_counter()

    def finish(self) -> OverlapStats:
        """Close the measured window (now) and return the stats."""
        if self._start is not None:
            self.stats.total_s = time.perf_counter() - self._start
        return self.stats

    def clear(self) -> None:
        """Forget in-flight batches (a restored source resamples them)."""
        self.pending.clear()


def iterate_batches(items: list, batch_size: int, seed: int = 0) -> Iterator[list]:
    """Endless deterministic shuffled batches over `items` (each epoch reshuffled)."""
    import random

    rng = random.Random(seed)
    order: list = []
    while True:
        if len(order) < batch_size:
            extra = list(items)
            rng.shuffle(extra)
            order.extend(extra)
        yield order[:batch_size]
        del order[:batch_size]

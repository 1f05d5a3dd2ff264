"""The online loop overlaps sandbox execution with device work, and stays correct."""
import time
from concurrent.futures import ThreadPoolExecutor

from coderl_jax.rl.overlap import ExecutionQueue, iterate_batches


def test_iterate_batches_is_deterministic_and_covers_items():
    a = iterate_batches(list(range(10)), 4, seed=3)
    b = iterate_batches(list(range(10)), 4, seed=3)
    first = [next(a) for _ in range(5)]
    assert first == [next(b) for _ in range(5)]
    flat = [x for batch in first for x in batch]
    assert sorted(flat[:10]) == list(range(10))  # the first epoch covers every item once


def test_execution_queue_pull_form():
    """The queue launches ahead by depth, pops in order with each batch's own results, and
    measures waiting: with depth 1 execution hides behind device work."""
    pool = ThreadPoolExecutor(2)
    results = {}
    for depth in (0, 1):
        q = ExecutionQueue(depth)
        got = []
        k = 0
        for _ in range(4):
            for _ in range(q.wanted()):
                time.sleep(0.05)  # sampling (device work)
                q.launch(k, pool.submit(lambda k=k: (time.sleep(0.05), 10 * k)[1]), 0.05)
                k += 1
            item, res = q.pop()
            got.append((item, res))
            time.sleep(0.05)  # learning (device work)
        stats = q.finish()
        assert got == [(i, 10 * i) for i in range(4)]
        assert len(q.pending) == depth and stats.batches == 4
        assert stats.execute_s >= 4 * 0.05 * 0.9
        results[depth] = stats
    pool.shutdown()
    assert results[0].wait_s > 0.15
    assert results[1].idle_fraction < results[0].idle_fraction / 3

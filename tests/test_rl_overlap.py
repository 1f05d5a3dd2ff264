"""The online loop overlaps sandbox execution with device work, and stays correct."""
import time
from concurrent.futures import ThreadPoolExecutor

from coderl_jax.rl.overlap import iterate_batches, run_overlapped


def _loop(depth):
    pool = ThreadPoolExecutor(2)
    order = []

    def sample(state, k):  # noqa: ARG001 (the loop's sample(state, k))
        time.sleep(0.05)  # device work
        return k

    def execute(batch):
        return pool.submit(lambda: (time.sleep(0.05), batch * 10)[1])

    def learn(state, batch, results):
        time.sleep(0.05)  # device work
        order.append((batch, results, state))
        return state + 1, {"r": results}

    state, stats = run_overlapped(0, 6, sample, execute, learn, depth=depth)
    pool.shutdown()
    return state, stats, order


def test_overlap_cuts_idle_time_and_keeps_order():
    s_serial, serial, order_serial = _loop(depth=0)
    s_over, over, order_over = _loop(depth=1)
    assert s_serial == s_over == 6
    # every batch is learned once, in order, with its own results
    assert [(b, r) for b, r, _ in order_over] == [(k, 10 * k) for k in range(6)]
    assert [(b, r) for b, r, _ in order_serial] == [(k, 10 * k) for k in range(6)]
    # serial: the host waits ~0.05 s per batch; overlapped: execution hides behind device work
    assert serial.wait_s > 0.2
    assert over.idle_fraction < serial.idle_fraction / 3
    assert over.total_s < serial.total_s


def test_iterate_batches_is_deterministic_and_covers_items():
    a = iterate_batches(list(range(10)), 4, seed=3)
    b = iterate_batches(list(range(10)), 4, seed=3)
    first = [next(a) for _ in range(5)]
    assert first == [next(b) for _ in range(5)]
    flat = [x for batch in first for x in batch]
    assert sorted(flat[:10]) == list(range(10))  # the first epoch covers every item once


def test_execution_queue_pull_form():
    """The pull-style queue: launches ahead by depth, pops in order, measures waiting."""
    from coderl_jax.rl.overlap import ExecutionQueue

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

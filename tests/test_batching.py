"""The micro-batcher behind bronze's group commit and the bridge's coalescing."""

from __future__ import annotations

import threading
import time

import pytest

from ateda.steps.batching import MicroBatcher


def _submit_all(batcher: MicroBatcher, items: list[int]) -> list:
    results: list = [None] * len(items)

    def run(i: int) -> None:
        try:
            results[i] = batcher.submit(items[i], timeout=10)
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_callers_share_one_batch_and_get_their_own_result():
    batches: list[list[int]] = []

    def process(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 10 for i in items]

    results = _submit_all(MicroBatcher(process, window_s=0.3, max_weight=1000), list(range(20)))
    assert results == [i * 10 for i in range(20)]
    assert len(batches) == 1 and sorted(batches[0]) == list(range(20))


def test_max_weight_closes_a_batch_early_and_quiet_closes_a_big_enough_one():
    sizes: list[int] = []
    batcher = MicroBatcher(lambda items: sizes.append(len(items)) or items, window_s=5, max_weight=4)
    start = time.monotonic()
    _submit_all(batcher, [1, 1, 1, 1])
    assert time.monotonic() - start < 2 and sizes == [4]
    quiet = MicroBatcher(lambda items: items, window_s=5, max_weight=100, enough=2, quiet_s=0.1)
    start = time.monotonic()
    _submit_all(quiet, [1, 1, 1])
    assert time.monotonic() - start < 2  # closed on quiet, long before the 5 s window


def test_a_failing_batch_fails_every_caller():
    def process(items: list[int]) -> list[int]:
        raise RuntimeError("catalog down")

    results = _submit_all(MicroBatcher(process, window_s=0.1, max_weight=100), [1, 2, 3])
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        MicroBatcher(process, window_s=0.0, max_weight=1).submit(1, timeout=5)

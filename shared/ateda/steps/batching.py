"""Micro-batching for request handlers: concurrent callers join one batch and each waits for its own result.

Used by bronze (a group commit per batch) and the MinIO bridge (one CloudEvent per batch of notifications). A
caller is answered only after its batch was processed, so an acknowledgement always means "done".
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class MicroBatcher(Generic[T, R]):
    """``submit(item)`` blocks until ``process(batch)`` (run on one background thread) returned its result.

    A batch closes ``window_s`` after its first item, as soon as its weight reaches ``max_weight``, or, once it
    weighs at least ``enough``, when no item has arrived for ``quiet_s`` (the stream paused: no point waiting).
    While a batch is processed, new items queue for the next one. ``process`` returns one result per item, or
    raises, in which case every caller of that batch gets the exception.
    """

    def __init__(self, process: Callable[[list[T]], list[R]], window_s: float, max_weight: float,
                 weight: Callable[[T], float] = lambda _: 1.0, name: str = "batcher",
                 enough: float | None = None, quiet_s: float = 0.25) -> None:
        self._process = process
        self._window = window_s
        self._max = max_weight
        self._enough = max_weight if enough is None else enough
        self._quiet = quiet_s
        self._last_arrival = 0.0
        self._weight = weight
        self._name = name
        self._queue: list[tuple[T, Future]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, item: T, timeout: float | None = None) -> R:
        fut: Future = Future()
        with self._cond:
            self._queue.append((item, fut))
            self._last_arrival = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return fut.result(timeout=timeout)

    def _loop(self) -> None:
        while True:
            batch = self._take()
            try:
                results = self._process([item for item, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results):
                fut.set_result(res)

    def _take(self) -> list[tuple[T, Future]]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            deadline = time.monotonic() + self._window
            while True:
                now = time.monotonic()
                left = deadline - now
                weight = sum(self._weight(i) for i, _ in self._queue)
                if left <= 0 or weight >= self._max:
                    break
                if weight >= self._enough:
                    quiet_left = self._last_arrival + self._quiet - now
                    if quiet_left <= 0:
                        break
                    left = min(left, quiet_left)
                self._cond.wait(left)
            batch, self._queue = self._queue, []
        return batch

"""Dynamic batching: concurrent requests share one forward pass.

A worker thread takes the first waiting item, then keeps collecting for up to
``max_wait_ms`` (or until ``max_batch`` items) and runs them together. Each caller gets a
``concurrent.futures.Future`` (``asyncio.wrap_future`` awaits it in the server). If a batch
fails, its items are retried one by one so that one bad input fails only its own request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future

_STOP = object()


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[Sequence], list], max_batch: int = 16,
                 max_wait_ms: float = 5.0, name: str = "batcher") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.name = name
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.sizes: Counter[int] = Counter()  # batch size -> how many batches of that size
        self._thread = threading.Thread(target=self._loop, name=f"inkpack-{name}", daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        fut: Future = Future()
        if not self._thread.is_alive():
            fut.set_exception(RuntimeError(f"{self.name}: batcher is stopped"))
            return fut
        self._q.put((item, fut))
        return fut

    def stats(self) -> dict:
        with self._lock:
            sizes = dict(self.sizes)
        n_batches = sum(sizes.values())
        n_items = sum(k * v for k, v in sizes.items())
        return {"batches": n_batches, "items": n_items, "max_batch_size": max(sizes, default=0),
                "mean_batch_size": (n_items / n_batches) if n_batches else 0.0,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000.0}

    def close(self, timeout: float = 5.0) -> None:
        self._q.put(_STOP)
        self._thread.join(timeout)

    def _collect(self, first) -> tuple[list, bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                stop = True
                break
            batch.append(nxt)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list) -> None:
        batch = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        with self._lock:
            self.sizes[len(batch)] += 1
        try:
            results = self.run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} inputs")
        except BaseException:
            if len(batch) == 1:
                import sys

                batch[0][1].set_exception(sys.exc_info()[1])
                return
            for one in batch:
                self._run_single(one)
            return
        for (_, fut), res in zip(batch, results):
            fut.set_result(res)

    def _run_single(self, one) -> None:
        item, fut = one
        try:
            fut.set_result(self.run_batch([item])[0])
        except BaseException as e:
            fut.set_exception(e)

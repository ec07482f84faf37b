"""Batching: concurrent requests to a text signature share one model run, in a bounded queue."""

from __future__ import annotations

import asyncio
import collections
import time

from serving.errors import QUEUE_FULL, ServingError
from serving.servable import CALL_CHUNK, _concat


class TextBatcher:
    """Batches concurrent serving_default requests into one signature call.

    A batch is sent when it holds ``max_batch_size`` texts, or ``timeout_s`` after its oldest
    request arrived, whichever is first. While the worker thread runs one batch, the next one
    fills up, so under load batches form without waiting. A request with more texts than
    ``max_batch_size`` is cut into pieces of at most that many, queued in turn, so it does not
    hold the model thread for longer than one batch at a time. The worker calls the signature
    with at most ``CALL_CHUNK`` texts at a time.

    The queue is bounded: at most ``max_enqueued_batches`` batches' worth of texts wait. A
    request that would overfill it is refused at once with UNAVAILABLE and TensorFlow Serving's
    message for a full batch queue, instead of waiting behind everyone else.

    When a batch made of several requests fails, each request is run again on its own, so one
    bad input fails only the request that sent it.
    """

    def __init__(self, executor, max_batch_size: int = 256, timeout_s: float = 0.002,
                 max_enqueued_batches: int = 64, metrics=None):
        self.executor = executor
        self.max_batch_size = max(1, int(max_batch_size))
        self.timeout_s = max(0.0, float(timeout_s))
        self.capacity = max(1, int(max_enqueued_batches)) * self.max_batch_size
        self.metrics = metrics
        self._queue: collections.deque = collections.deque()
        self._size = 0
        self._wake: asyncio.Future | None = None
        self._full: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.texts = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            fut = self._queue.popleft()[2]
            if not fut.done():
                fut.set_exception(ServingError("UNAVAILABLE", "the server is shutting down"))

    @property
    def queued(self) -> int:
        """Texts waiting now."""
        return self._size

    async def submit(self, servable, texts: list) -> dict:
        """Run serving_default over ``texts`` (ready for the signature: segmented for word models)
        in the next batches; the outputs, one row per text. UNAVAILABLE when the queue is full."""
        if self._size + len(texts) > self.capacity:
            if self.metrics:
                self.metrics.rejections.inc()
            raise ServingError("UNAVAILABLE", f"{QUEUE_FULL} ({self._size} texts queued, room for {self.capacity}: "
                                              "--max_enqueued_batches x --max_batch_size); retry later")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for i in range(0, max(len(texts), 1), self.max_batch_size):
            fut = loop.create_future()
            piece = texts[i : i + self.max_batch_size]
            self._queue.append((servable, piece, fut, now))
            self._size += len(piece)
            futures.append(fut)
        self._gauge()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self._full is not None and self._size >= self.max_batch_size and not self._full.done():
            self._full.set_result(None)
        if len(futures) == 1:
            return await futures[0]
        parts = await asyncio.gather(*futures)
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.queue_texts.set(self._size)

    @staticmethod
    def _release(fut):
        if not fut.done():
            fut.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            remaining = self._queue[0][3] + self.timeout_s - time.monotonic()
            if remaining > 0 and self._size < self.max_batch_size:
                self._full = loop.create_future()
                timer = loop.call_later(remaining, self._release, self._full)
                try:
                    await self._full
                finally:
                    timer.cancel()
                    self._full = None
            batch = self._take()
            self._gauge()
            servable = batch[0][0]
            texts = [t for item in batch for t in item[1]]
            chunk = min(self.max_batch_size, CALL_CHUNK)
            try:
                outputs = await loop.run_in_executor(self.executor, servable.run_texts, texts, chunk, True)
            except Exception as e:  # noqa: BLE001 - answered to the requests, never lost
                if len(batch) == 1:
                    if not batch[0][2].done():
                        batch[0][2].set_exception(e)
                    continue
                await self._run_alone(batch, chunk)
                continue
            self._count(len(texts))
            start = 0
            for _s, item_texts, fut, _t in batch:
                end = start + len(item_texts)
                if not fut.done():
                    fut.set_result({k: v[start:end] for k, v in outputs.items()})
                start = end

    def _count(self, n: int) -> None:
        self.batches += 1
        self.texts += n
        if self.metrics:
            self.metrics.batch_size.observe(n)

    async def _run_alone(self, batch: list, chunk: int) -> None:
        """A failed batch of several requests: each one again on its own, so only bad ones fail."""
        loop = asyncio.get_running_loop()
        for servable, texts, fut, _t in batch:
            try:
                out = await loop.run_in_executor(self.executor, servable.run_texts, texts, chunk, True)
            except Exception as e:  # noqa: BLE001
                if not fut.done():
                    fut.set_exception(e)
                continue
            self._count(len(texts))
            if not fut.done():
                fut.set_result(out)

    def _take(self) -> list:
        first = self._queue.popleft()
        batch, n = [first], len(first[1])
        while self._queue:
            nxt = self._queue[0]
            if nxt[0] is not first[0] or n + len(nxt[1]) > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(nxt)
            n += len(nxt[1])
        self._size -= n
        return batch

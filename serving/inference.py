"""Running a parsed request on a servable: the limits, the segmentation pool, the batcher, the model thread.

REST and gRPC both come here once their codec has turned the request into arrays, so both get
the same answers and the same limits:

- at most ``max_instances`` rows per request (INVALID_ARGUMENT past it);
- text signatures (``serving_default``) go through the :class:`~serving.batcher.TextBatcher`,
  whose bounded queue refuses work with UNAVAILABLE when full; ``word`` models' texts are
  segmented first by jieba on a pool of ``segment_threads`` threads, never on the model
  thread, so a long text being segmented does not hold up other models' batches;
- ``word`` models' ``explain`` and ``attention_maps`` texts are segmented on that pool too, and the
  answer's character spans mapped back to the raw text (as :meth:`Predictor.explain` does);
- other signatures (``predict_ids``) run on the model thread directly, at most
  ``max_enqueued_batches`` of them waiting (UNAVAILABLE past it);
- TensorFlow's InvalidArgument errors from the graph (an id outside the vocabulary) are the
  client's error (INVALID_ARGUMENT), anything else a server fault.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import numpy as np

from serving.batcher import TextBatcher
from serving.errors import QUEUE_FULL, ServingError, from_model_error, invalid
from serving.servable import TEXT_INPUT


class Inference:
    """Where requests run. :meth:`start` and :meth:`stop` are called on the server's event loop."""

    def __init__(self, *, max_batch_size: int = 256, batch_timeout_ms: float = 2.0, max_enqueued_batches: int = 64,
                 max_instances: int = 1024, segment_threads: int = 2, metrics=None):
        self.max_instances = max(1, int(max_instances))
        self.max_direct = max(1, int(max_enqueued_batches))
        self.model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.segmenter = concurrent.futures.ThreadPoolExecutor(max(1, int(segment_threads)), thread_name_prefix="segment")
        self.batcher = TextBatcher(self.model_thread, max_batch_size, batch_timeout_ms / 1000.0, max_enqueued_batches,
                                   metrics)
        self._direct = 0

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.segmenter.shutdown(wait=False, cancel_futures=True)
        self.model_thread.shutdown(wait=True)

    def check_size(self, n: int, where: str) -> None:
        if n > self.max_instances:
            raise invalid(f"{where}: {n} instances in one request; this server takes at most {self.max_instances} "
                          "(--max_instances_per_request): send them in several requests")

    async def run(self, servable, sig: str, arrays: dict) -> dict:
        """Outputs of signature ``sig`` for ``arrays`` ({input: numpy array}; for a text signature
        the ``text`` input may be a list of str/bytes)."""
        loop = asyncio.get_running_loop()
        try:
            if servable.text_signature(sig):
                texts = arrays[TEXT_INPUT]
                texts = texts.reshape(-1).tolist() if isinstance(texts, np.ndarray) else list(texts)
                if servable.segments and texts:
                    texts = await loop.run_in_executor(self.segmenter, servable.segment, texts)
                return await self.batcher.submit(servable, texts)
            if servable.segments and servable.span_signature(sig):  # explain on a word model: as the Predictor does
                texts = arrays[TEXT_INPUT].reshape(-1).tolist()
                segmented = await loop.run_in_executor(self.segmenter, servable.segment_with_offsets, texts)
                return await self._direct_call(servable.run_spans, sig, arrays, segmented)
            return await self._direct_call(servable.run, sig, arrays)
        except ServingError:
            raise
        except Exception as e:  # noqa: BLE001
            err = from_model_error(e)
            if err is None:
                raise
            raise err from None

    async def _direct_call(self, fn, sig: str, *args):
        """``fn(sig, *args)`` on the model thread, at most ``max_enqueued_batches`` such calls waiting."""
        if self._direct >= self.max_direct:
            raise ServingError("UNAVAILABLE", f"{QUEUE_FULL} ({self._direct} {sig} calls waiting); retry later")
        self._direct += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn, sig, *args)
        finally:
            self._direct -= 1

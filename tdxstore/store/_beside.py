"""One worker thread that consumes byte chunks in order beside the caller (L2, private).

The NAR dumper hands each chunk to a consumer (a SHA-256, a reference scan) that runs in the
worker while the caller writes that chunk and reads the next: hashlib, os.read and os.write release
the GIL, so two cores share one pass. At most two chunks are in flight: a caller may refill a
buffer once the call after the one that passed it has returned (two alternating buffers suffice).
A consumer's error is raised in the caller's thread; `close` always stops and joins the worker.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

ByteChunk = bytes | bytearray | memoryview
T = TypeVar("T")


class Beside(Generic[T]):
    """Runs `consume(item)` in a worker thread, item after item, in the order they were put."""

    __slots__ = ("_consume", "_done", "_flight", "_name", "_thread", "_todo")

    def __init__(self, consume: Callable[[T], None], name: str) -> None:
        self._consume = consume
        self._name = name
        self._todo: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._flight = 0  # chunks put and not yet acknowledged

    def _work(self) -> None:
        failed = False
        while (chunk := self._todo.get()) is not None:
            if failed:  # the caller raises the first error; later chunks are only acknowledged
                self._done.put(None)
                continue
            try:
                self._consume(chunk)
                self._done.put(None)
            except BaseException as e:  # handed to the caller's thread
                failed = True
                self._done.put(e)

    def put(self, chunk: T) -> None:
        """Queue `chunk`; the caller must not change it until `settle(0)`, or `settle` after the next put."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        self._todo.put(chunk)
        self._flight += 1

    def settle(self, keep: int = 1) -> None:
        """Wait until at most `keep` chunks are in flight; raise a consumer's error."""
        while self._flight > keep:
            failed = self._done.get()
            self._flight -= 1
            if failed is not None:
                raise failed

    def close(self) -> None:
        """Stop and join the worker (after an error too); chunks still in flight are dropped."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None
            while not self._done.empty():
                self._done.get()
            self._flight = 0


class HashBeside:
    """A sink that hashes in the worker: `h` is complete after `finish`, and only then."""

    __slots__ = ("_beside", "_h")

    MIN = 1 << 14  # smaller chunks cost more to hand over than to hash inline

    def __init__(self, h: hashlib._Hash) -> None:
        self._h = h
        self._beside: Beside[ByteChunk] = Beside(h.update, "nar-hash")

    def __call__(self, chunk: ByteChunk) -> None:
        if len(chunk) < self.MIN:
            self._beside.settle(0)  # in order: the worker's chunks come first
            self._h.update(chunk)
            return
        self._beside.put(chunk)
        self._beside.settle(1)

    def finish(self) -> None:
        self._beside.settle(0)

    def close(self) -> None:
        self._beside.close()

"""Reference scanning, and the worker thread that hashes or scans beside the NAR dumper (L2, private).

`RefScanner` finds candidate hash parts in NAR chunks, also across chunk boundaries (the trailing
base-32 run is carried over); it never decodes or allocates per byte in Python and reports only
candidates. Large chunks are sampled every 8th byte first: only runs of 4 base-32 samples are
scanned byte by byte. `Beside` consumes chunks in order in one worker while the caller writes one
and reads the next (hashlib, os.read/os.write release the GIL): at most two in flight, its errors
raised in the caller's thread, and `close` always joins it.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from tdxstore.errors import StorePathError
from tdxstore.store.base32 import ALPHABET

HASH_LEN = 32
_CLASS = b"[" + re.escape(ALPHABET.encode()) + b"]"
_MARK = bytes(1 if chr(i) in ALPHABET else 0 for i in range(256))
_RUN_MARK = b"\1" * HASH_LEN  # a hash part can only lie inside a run of 32 marked bytes
# The run of base-32 characters that ends a chunk (the part that may continue in the next one).
_TAIL = re.compile(_CLASS + b"*\\Z")
_VALID = re.compile(_CLASS + b"{%d}" % HASH_LEN)

_PIECE = 1 << 16  # exact scans run over pieces this size: translate() over more misses the L2 cache
_STRIDE = 8  # sample every 8th byte; HASH_LEN consecutive bytes always hold HASH_LEN // _STRIDE samples
_SAMPLE_RUN = b"\1" * (HASH_LEN // _STRIDE)
_SAMPLED = 1 << 12  # chunks from this size on are sampled first
_MAX_CHUNK = 1 << 21  # larger chunks are split, so the samples stay cache-sized
ByteChunk = bytes | bytearray | memoryview
T = TypeVar("T")


class RefScanner:
    """Accumulates the candidates seen so far; `found` is valid after every `feed`."""

    __slots__ = ("_carry", "_pending", "found")

    def __init__(self, candidates: Iterable[str]) -> None:
        pending: set[bytes] = set()
        for cand in candidates:
            raw = cand.encode("ascii", "replace")
            if _VALID.fullmatch(raw) is None:
                raise StorePathError(
                    f"reference candidate {cand!r} is not a 32-character Nix base-32 hash part",
                    hint="Pass StorePath.hash_part values, not full store paths.",
                )
            pending.add(raw)
        self._pending = pending
        self._carry = b""
        self.found: set[str] = set()

    @property
    def done(self) -> bool:
        """True when every candidate has been seen (further scanning cannot add anything)."""
        return not self._pending

    def feed(self, chunk: ByteChunk) -> None:
        if len(chunk) > _MAX_CHUNK:
            view = memoryview(chunk)
            for i in range(0, len(view), _MAX_CHUNK):
                self._feed(bytes(view[i:i + _MAX_CHUNK]))
        else:
            self._feed(bytes(chunk) if isinstance(chunk, memoryview) else chunk)

    def _feed(self, chunk: bytes | bytearray) -> None:
        if not self._pending:
            return
        n = len(chunk)
        if self._carry:
            # Windows straddling the boundary lie within carry (<= 31) + the first 31 bytes.
            self._scan(self._carry + bytes(chunk[: HASH_LEN - 1]))
        if n >= _SAMPLED:
            self._sampled(chunk)
        else:
            self._scan(chunk)
        tail = bytes(chunk[-(HASH_LEN - 1):]) if n >= HASH_LEN - 1 else self._carry + bytes(chunk)
        m = _TAIL.search(tail)
        self._carry = m.group()[-(HASH_LEN - 1):] if m else b""

    def _sampled(self, data: bytes | bytearray) -> None:
        """Scan byte by byte only around runs of 4 base-32 samples taken 8 bytes apart.

        A maximal run of marked samples [j, k) bounds every byte run it can belong to: the samples
        at j - 1 and k are not base-32, so such a run lies inside data[8j - 7 : 8k].
        """
        marks = data[::_STRIDE].translate(_MARK)
        j = marks.find(_SAMPLE_RUN)
        while j != -1:
            k = marks.find(b"\0", j + len(_SAMPLE_RUN))
            if k == -1:
                k = len(marks)
            lo = max(0, _STRIDE * j - (_STRIDE - 1))
            hi = min(len(data), _STRIDE * k)
            for i in range(lo, hi, _PIECE):
                # pieces overlap by HASH_LEN - 1 bytes so that no window is cut
                self._scan(data[i:min(hi, i + _PIECE + HASH_LEN - 1)])
            if not self._pending:
                return
            j = marks.find(_SAMPLE_RUN, k)

    def _scan(self, data: ByteChunk) -> None:
        # Map base-32 bytes to 1 and all others to 0, then let bytes.find (C, skips ahead) locate
        # runs of 32 ones: 10x faster than a regex stepping through binary data byte by byte.
        if isinstance(data, memoryview):
            data = bytes(data)
        marks = data.translate(_MARK)
        pending = self._pending
        start = marks.find(_RUN_MARK)
        while start != -1:
            end = marks.find(b"\0", start + HASH_LEN)
            if end == -1:
                end = len(marks)
            run = bytes(data[start:end])
            if len(run) == HASH_LEN:
                hits = [run] if run in pending else []
            elif len(run) - HASH_LEN < 8 * len(pending):
                hits = [w for i in range(len(run) - HASH_LEN + 1) if (w := run[i:i + HASH_LEN]) in pending]
            else:
                # A long run (e.g. a huge file of base-32 letters): search each candidate in C instead
                # of sliding a window in Python.
                hits = [c for c in pending if c in run]
            for hit in hits:
                pending.discard(hit)
                self.found.add(hit.decode("ascii"))
            if not pending:
                return
            start = marks.find(_RUN_MARK, end)


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
    """A sink that hashes in the worker: `h` is complete after `finish`, and only then.

    One worker serves a run of hashes (`restart`: export hashes every NAR of a bundle on one thread).
    The caller waits after each chunk for the one before, not for a deeper queue: the dumper's two
    buffers need that, and export measured no gain from 16 chunks in flight (docs/store.md).
    """

    __slots__ = ("_beside", "_h")

    MIN = 1 << 14  # smaller chunks cost more to hand over than to hash inline

    def __init__(self, h: hashlib._Hash, name: str = "nar-hash") -> None:
        self._h = h
        self._beside: Beside[ByteChunk] = Beside(self._update, name)

    def _update(self, chunk: ByteChunk) -> None:
        self._h.update(chunk)  # through self: `restart` swaps the hash the worker feeds

    def __call__(self, chunk: ByteChunk) -> None:
        if len(chunk) < self.MIN:
            self._beside.settle(0)  # in order: the worker's chunks come first
            self._h.update(chunk)
            return
        self._beside.put(chunk)
        self._beside.settle(1)

    def finish(self) -> None:
        self._beside.settle(0)

    def restart(self, h: hashlib._Hash) -> None:
        """Finish the current hash and feed the next chunks to `h` (the same worker goes on)."""
        self._beside.settle(0)
        self._h = h

    def close(self) -> None:
        self._beside.close()


class ScanBeside:
    """Scans each large chunk in a worker thread while the caller hashes it: one pass, two cores.

    The caller hashes (hashlib releases the GIL while it hashes more than 2 KiB), and that is when
    the worker, woken by the chunk, holds the GIL to scan; the other way round the worker would wait
    for the scanning caller's GIL switch interval. A call returns once the worker is done with the
    chunk before it, so the scan of one chunk overlaps the read and the hash of the next: the dumper
    alternates two buffers. Small chunks stay inline, after the worker's. `found` is complete after
    `finish`; `close` always joins the worker.
    """

    __slots__ = ("_beside", "_h", "_scanner")
    MIN = 1 << 16

    def __init__(self, h: hashlib._Hash, scanner: RefScanner) -> None:
        self._h, self._scanner = h, scanner
        self._beside: Beside[ByteChunk] = Beside(scanner.feed, "nar-scan")

    def __call__(self, chunk: ByteChunk) -> None:
        if self._scanner.done:  # every candidate found: nothing left to scan
            self._h.update(chunk)
            return
        if len(chunk) < self.MIN:
            self._beside.settle(0)
            self._h.update(chunk)
            self._scanner.feed(chunk)
            return
        self._beside.put(chunk)
        self._h.update(chunk)
        self._beside.settle(1)

    def finish(self) -> None:
        self._beside.settle(0)

    def close(self) -> None:
        self._beside.close()

"""The worker beside the NAR dumper: chunks consumed in order, errors raised in the caller, no thread left.

Real threads and real hashing: the digests are compared with hashlib over the same bytes in one
piece, and the threads alive afterwards are read from `threading.enumerate()`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tdxstore.errors import NarError
from tdxstore.store import nar
from tdxstore.store._refscan import Beside, HashBeside, RefScanner, ScanBeside


def _workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("nar-hash", "nar-scan", "beside-test")]


def test_hash_beside_hashes_mixed_chunks_in_order_with_two_buffers() -> None:
    data = os.urandom(5 << 20)
    sizes = [1 << 20, 100, 1 << 20, 20_000, 3, 1 << 20, 1 << 19]
    bufs = (bytearray(1 << 20), bytearray(1 << 20))
    h = hashlib.sha256()
    sink = HashBeside(h)
    pos = 0
    try:
        for i, n in enumerate(sizes):
            buf = bufs[i % 2]  # refilled only after the call following the one that passed it
            buf[:n] = data[pos:pos + n]
            sink(memoryview(buf)[:n] if n < len(buf) else buf)
            pos += n
        sink.finish()
    finally:
        sink.close()
    assert h.digest() == hashlib.sha256(data[:pos]).digest()
    assert not _workers()


def test_a_consumer_error_reaches_the_caller_once_and_the_worker_is_joined() -> None:
    seen: list[int] = []

    def consume(chunk: object) -> None:
        seen.append(1)
        if len(seen) == 2:
            raise NarError("boom", code="nar-unreadable")

    beside = Beside(consume, "beside-test")
    with pytest.raises(NarError) as e:
        try:
            for _ in range(5):
                beside.put(b"x" * 10)
                beside.settle(1)
            beside.settle(0)
        finally:
            beside.close()
    assert e.value.code == "nar-unreadable"
    assert len(seen) == 2  # chunks after the failure are acknowledged, not consumed
    assert not _workers()


def test_scan_beside_finds_a_hash_part_across_streamed_chunks(tmp_path: Path) -> None:
    part = "abcdfghijklmnpqrsvwxyz0123456789"
    data = bytearray(os.urandom(4 * nar.CHUNK).translate(bytes(range(128, 256)) * 2))
    data[3 * nar.CHUNK - 10: 3 * nar.CHUNK + 22] = part.encode()  # across the 3rd and 4th chunk
    (tmp_path / "f").write_bytes(bytes(data))
    digest, found = nar.hash_and_scan(tmp_path / "f", [part, "0" * 31 + "1"])
    assert found == {part}
    assert digest == nar.hash_path(tmp_path / "f")
    assert not _workers()


def test_scan_beside_close_after_an_error_leaves_no_thread() -> None:
    h = hashlib.sha256()
    sink = ScanBeside(h, RefScanner(["0" * 31 + "1"]))
    with pytest.raises(TypeError):
        try:
            sink(bytearray(1 << 20))
            sink(bytearray(1 << 20))
            sink(object())  # type: ignore[arg-type]  # not a buffer: the caller's hash raises
        finally:
            sink.close()
    assert not _workers()


def test_copy_and_hash_of_a_large_file_joins_its_worker_after_a_failure(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(os.urandom(3 * nar.CHUNK + 5))

    def fail(_chunk: object) -> None:
        raise NarError("stop", code="source-changed")

    with pytest.raises(NarError) as e:
        nar.copy_and_hash(tmp_path / "src", tmp_path / "dest", contents=fail)
    assert e.value.code == "source-changed"
    assert not (tmp_path / "dest").exists()
    assert not _workers()
    digest = nar.copy_and_hash(tmp_path / "src", tmp_path / "dest")
    assert digest == nar.hash_path(tmp_path / "src") == nar.hash_path(tmp_path / "dest")
    assert not _workers()


def test_the_download_tee_hashes_the_nar_beside_and_starts_over_on_a_retry(tmp_path: Path) -> None:
    from tdxstore.store.builtins import _NarOfDownload

    data = os.urandom(3 * nar.CHUNK + 11)
    (tmp_path / "f").write_bytes(data)
    tee = _NarOfDownload()
    try:
        tee.start(len(data))
        tee.update(data[:nar.CHUNK])  # a first attempt, cut short
        tee.start(len(data))  # the retry starts over
        for i in range(0, len(data), 65536):
            tee.update(data[i:i + 65536])
        assert tee.finish() == nar.hash_path(tmp_path / "f")
        tee.start(None)  # no announced length: no NAR digest, no worker
        tee.update(b"x")
        assert tee.finish() is None
        assert not _workers()
        tee.start(5)
        tee.update(b"abc")
        with pytest.raises(NarError) as e:
            tee.finish()  # fewer bytes than announced
        assert e.value.code == "source-changed"
    finally:
        tee.close()
    assert not _workers()


def test_hash_beside_restart_hashes_each_run_on_one_worker_and_a_worker_error_is_raised_once() -> None:
    """Export hashes every NAR of a bundle on one worker: `restart` ends one digest and begins the next."""
    parts = [os.urandom(n) for n in (3 << 20, 100, 1 << 20)]
    hashes = [hashlib.sha256() for _ in parts]
    sink = HashBeside(hashes[0], "export-hash")
    try:
        for h, data in zip(hashes, parts, strict=True):
            sink.restart(h)
            for i in range(0, len(data), 1 << 18):
                sink(data[i:i + (1 << 18)])
        sink.finish()
        assert [h.digest() for h in hashes] == [hashlib.sha256(p).digest() for p in parts]
        assert [t.name for t in threading.enumerate()].count("export-hash") == 1  # one worker for all three
        sink(bytearray(1 << 15))
        sink("not bytes" * 4000)  # type: ignore[arg-type]  # hashlib refuses it, in the worker
        with pytest.raises(TypeError):
            sink.finish()
        sink.finish()  # raised once: the failed chunk was acknowledged
    finally:
        sink.close()
    assert "export-hash" not in [t.name for t in threading.enumerate()]

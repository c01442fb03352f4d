"""The shared GC guard: re-entrant within a Store (any thread), one flock, released by the last holder."""

from __future__ import annotations

import threading
from pathlib import Path

from tdxstore._lock import FileLock
from tdxstore.store.gc import add_root
from tdxstore.store.store import Store


def _gc_could_run(store: Store) -> bool:
    """Whether a gc (an exclusive flock on gc.lock, from another open file) would get the lock now."""
    lock = FileLock(store.locks / "gc.lock")
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


def test_nested_and_threaded_holders_share_one_lock(store: Store) -> None:
    assert _gc_could_run(store)
    entered, leave = threading.Event(), threading.Event()

    def worker() -> None:
        with store.gc_guard():
            entered.set()
            leave.wait(10)

    with store.gc_guard():
        with store.gc_guard():
            assert not _gc_could_run(store)
        assert not _gc_could_run(store)  # the inner exit does not release the outer hold
        t = threading.Thread(target=worker)
        t.start()
        assert entered.wait(10)
    assert not _gc_could_run(store)  # the worker still holds it
    leave.set()
    t.join(10)
    assert _gc_could_run(store)


def test_add_root_inside_a_guard(store: Store, tmp_path: Path) -> None:
    with store.gc_guard():
        sp = store.add_bytes("kept", b"kept\n")
        link = add_root(store, tmp_path / "result", sp)
        assert not _gc_could_run(store)
    assert _gc_could_run(store)
    assert store.parse(link) == sp

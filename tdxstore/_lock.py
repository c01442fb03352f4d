"""Advisory file locks (L0, stdlib only): per-path locks and the store-wide GC lock.

`flock` locks vanish when their holder dies (even under SIGKILL), so a crashed process never
leaves a stale lock behind; lock files themselves are left in place and reused. Several locks are
always taken in sorted order so two processes cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


class FileLock:
    """One flock-ed lock file; `shared` for readers, exclusive otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


@contextlib.contextmanager
def locked(paths: Iterable[Path], *, shared: bool = False) -> Iterator[None]:
    """Hold exclusive (or shared) locks on all `paths`, acquired in sorted order."""
    held: list[FileLock] = []
    try:
        for p in sorted(set(paths)):
            lock = FileLock(p)
            lock.acquire(shared=shared)
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()

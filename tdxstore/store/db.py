"""The SQLite database of valid store paths (L2).

WAL mode, a busy timeout and one retry helper for SQLITE_BUSY; every write happens inside
`transaction()`. The schema lives in `schema.sql` and is versioned with PRAGMA user_version: a
database newer than this code is refused, an unreadable one is reported with the repair command.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tdxstore.errors import NoSpaceError, StoreError
from tdxstore.store.path import StorePath

SCHEMA_VERSION = 1
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What the database knows about one valid path."""

    path: StorePath
    nar_hash: str  # sha256:<hex>
    nar_size: int
    references: tuple[StorePath, ...]
    registration_time: int
    deriver: StorePath | None = None
    ca: str | None = None
    impure: bool = False


def _full(db_path: Path) -> bool:
    """Whether the device holding the database is (practically) full: SQLite then reports I/O errors."""
    try:
        st = os.statvfs(db_path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 16


def _no_space(db_path: Path, e: Exception) -> NoSpaceError:
    return NoSpaceError(f"no space left on the device holding {str(db_path.parent)!r}: the store database "
                        f"cannot be written ({e})",
                        hint="free some space on that device; the database is not damaged, do not repair it",
                        code="no-space")


def _corrupt(db_path: Path, e: Exception) -> StoreError:
    if _full(db_path):
        return _no_space(db_path, e)
    return StoreError(
        f"the store database {str(db_path)!r} cannot be read: {e}",
        hint="run `tdx store verify --repair-db` to rebuild it from the store contents",
        code="db-corrupt",
    )


def retry_busy(fn: Callable[[], _T], attempts: int = 50) -> _T:
    """Run `fn`, retrying while SQLite reports the database as locked (another writer)."""
    delay = 0.01
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")


class Database:
    """One connection to `db.sqlite`; not shared between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_lock = threading.RLock()  # one connection, several builder threads (-j)
        try:
            self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA foreign_keys = ON")
            retry_busy(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
            self.conn.execute("PRAGMA synchronous = NORMAL")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store database {str(path)!r} has schema version {version}, newer than this tdx "
                    f"understands ({SCHEMA_VERSION})",
                    hint="upgrade tdx-vm-sdk, or point TDX_HOME at another store",
                    code="db-too-new",
                )
            if version < SCHEMA_VERSION:
                schema = (Path(__file__).parent / "schema.sql").read_text()
                with self._write_lock:
                    retry_busy(lambda: self.conn.executescript(
                        f"BEGIN IMMEDIATE;\n{schema}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"))
            self.conn.execute("SELECT count(*) FROM valid_paths").fetchone()
            self._add_signatures_table()
        except sqlite3.DatabaseError as e:
            raise _corrupt(path, e) from e

    def _add_signatures_table(self) -> None:
        """The `signatures` table is additive (schema version 1 still): stores made before it get it here."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'signatures'").fetchone():
            return
        with self._write_lock:
            retry_busy(lambda: self.conn.executescript(
                "BEGIN IMMEDIATE;\nCREATE TABLE IF NOT EXISTS signatures (path INTEGER NOT NULL REFERENCES "
                "valid_paths(id) ON DELETE CASCADE, signature TEXT NOT NULL, PRIMARY KEY (path, signature));\n"
                "COMMIT;"))

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        with self._write_lock:
            try:
                retry_busy(lambda: self.conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield self.conn
                    retry_busy(lambda: self.conn.execute("COMMIT"))
                except BaseException:
                    if self.conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                        self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                if "full" in str(e) or _full(self.path):
                    raise _no_space(self.path, e) from e
                raise

    # -- queries -----------------------------------------------------------------------------

    def is_valid(self, base: str) -> bool:
        return self.conn.execute("SELECT 1 FROM valid_paths WHERE path = ?", (base,)).fetchone() is not None

    def query(self, base: str) -> PathInfo | None:
        row = self.conn.execute(
            "SELECT id, nar_hash, nar_size, registration_time, deriver, ca, impure FROM valid_paths "
            "WHERE path = ?", (base,)).fetchone()
        if row is None:
            return None
        refs = [r[0] for r in self.conn.execute(
            "SELECT v.path FROM refs JOIN valid_paths v ON v.id = refs.reference WHERE refs.referrer = ? "
            "ORDER BY v.path", (row[0],))]
        return PathInfo(
            path=StorePath.from_base_name(base), nar_hash=row[1], nar_size=row[2],
            references=tuple(StorePath.from_base_name(r) for r in refs), registration_time=row[3],
            deriver=StorePath.from_base_name(row[4]) if row[4] else None, ca=row[5], impure=bool(row[6]),
        )

    def all_paths(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM valid_paths ORDER BY path")]

    def references(self, base: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT r.path FROM valid_paths p JOIN refs ON refs.referrer = p.id "
            "JOIN valid_paths r ON r.id = refs.reference WHERE p.path = ? ORDER BY r.path", (base,))]

    def referrers(self, base: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT p.path FROM valid_paths r JOIN refs ON refs.reference = r.id "
            "JOIN valid_paths p ON p.id = refs.referrer WHERE r.path = ? ORDER BY p.path", (base,))]

    def edges(self) -> list[tuple[str, str]]:
        return list(self.conn.execute(
            "SELECT p.path, r.path FROM refs JOIN valid_paths p ON p.id = refs.referrer "
            "JOIN valid_paths r ON r.id = refs.reference"))

    def signatures(self, base: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT s.signature FROM signatures s JOIN valid_paths v ON v.id = s.path WHERE v.path = ? "
            "ORDER BY s.signature", (base,))]

    def derivation_output(self, drv: str, output: str) -> str | None:
        row = self.conn.execute("SELECT path FROM derivation_outputs WHERE drv = ? AND output = ?",
                                (drv, output)).fetchone()
        return row[0] if row else None

    # -- writes (call inside transaction()) -----------------------------------------------------

    def insert(self, conn: sqlite3.Connection, info: PathInfo) -> None:
        """Register `info`; its references must already be valid (or be the path itself)."""
        base = info.path.base_name
        cur = conn.execute(
            "INSERT INTO valid_paths (path, nar_hash, nar_size, registration_time, deriver, ca, impure) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (base, info.nar_hash, info.nar_size, info.registration_time,
             info.deriver.base_name if info.deriver else None, info.ca, int(info.impure)))
        pid = cur.lastrowid
        for ref in info.references:
            row = conn.execute("SELECT id FROM valid_paths WHERE path = ?", (ref.base_name,)).fetchone()
            if row is None:
                raise StoreError(f"cannot register {info.path}: its reference {ref} is not valid",
                                 code="invalid-reference")
            conn.execute("INSERT OR IGNORE INTO refs (referrer, reference) VALUES (?, ?)", (pid, row[0]))

    def add_signatures(self, conn: sqlite3.Connection, base: str, signatures: Iterable[str]) -> None:
        row = conn.execute("SELECT id FROM valid_paths WHERE path = ?", (base,)).fetchone()
        if row is None:
            raise StoreError(f"cannot sign /tdx/store/{base}: it is not valid", code="path-not-valid")
        conn.executemany("INSERT OR IGNORE INTO signatures (path, signature) VALUES (?, ?)",
                         [(row[0], s) for s in signatures])

    def record_output(self, conn: sqlite3.Connection, drv: str, output: str, path: str) -> None:
        conn.execute("INSERT OR REPLACE INTO derivation_outputs (drv, output, path) VALUES (?, ?, ?)",
                     (drv, output, path))

    def delete(self, conn: sqlite3.Connection, bases: Iterable[str]) -> None:
        for base in bases:
            conn.execute("DELETE FROM derivation_outputs WHERE path = ? OR drv = ?", (base, base))
            conn.execute("DELETE FROM valid_paths WHERE path = ?", (base,))

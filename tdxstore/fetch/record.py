"""The in-process registry of resolved fetches, which the lockfile writes as `[[fetch]]` entries (L2).

Every `fetch()`/`fetch_git()` that resolves (downloaded or found in the store) calls `record()`.
The registry is append-only within a process, thread-safe, and holds one entry per
(kind, url, integrity, rev, tag): the first resolution's timestamp is kept. No I/O happens here.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from dataclasses import dataclass
from enum import StrEnum

from tdxstore.errors import LockfileError, UsageError

_INTEGRITY_RE = re.compile(r"sha256:[0-9a-f]{64}")
_STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class FetchKind(StrEnum):
    FETCH = "fetch"
    FETCH_GIT = "fetch_git"


def utc_now() -> str:
    """ISO-8601 UTC, seconds precision, `Z` suffix (the lockfile's `resolved_at` format)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One resolved external resource: what the lockfile pins."""

    url: str
    integrity: str  # sha256:<hex>
    resolved_at: str  # 2026-02-22T10:30:00Z
    kind: FetchKind = FetchKind.FETCH
    rev: str | None = None  # fetch_git: the resolved commit (None if found in the store by tag)
    tag: str | None = None  # fetch_git: the tag asked for, if any
    name: str | None = None  # the store path name

    def __post_init__(self) -> None:
        if not _INTEGRITY_RE.fullmatch(self.integrity):
            raise UsageError(f"fetch record integrity {self.integrity!r} is not sha256:<64 hex>",
                             code="bad-hash")
        if not _STAMP_RE.fullmatch(self.resolved_at):
            raise UsageError(f"fetch record resolved_at {self.resolved_at!r} is not YYYY-MM-DDTHH:MM:SSZ",
                             code="bad-timestamp")
        if self.kind == FetchKind.FETCH and (self.rev is not None or self.tag is not None):
            raise UsageError("a plain fetch record cannot carry a git rev or tag", code="bad-record")

    @property
    def key(self) -> tuple[str, str, str, str | None, str | None]:
        return (self.kind.value, self.url, self.integrity, self.rev, self.tag)

    def as_lock_entry(self) -> dict[str, str]:
        """The `[[fetch]]` table: url, integrity, resolved_at, plus kind/rev/tag for git fetches."""
        entry = {"url": self.url, "integrity": self.integrity, "resolved_at": self.resolved_at}
        if self.kind == FetchKind.FETCH_GIT:
            entry["kind"] = self.kind.value
            if self.rev is not None:
                entry["rev"] = self.rev
            if self.tag is not None:
                entry["tag"] = self.tag
        return entry


_lock = threading.Lock()
_records: list[FetchRecord] = []
_seen: set[tuple[str, str, str, str | None, str | None]] = set()
_allowed: frozenset[tuple[str, str, str]] | None = None  # frozen builds: (kind, url, integrity) in tdx.lock


def allow_only(keys: frozenset[tuple[str, str, str]] | None) -> None:
    """Frozen builds: refuse every fetch whose (kind, url, integrity) is not in `keys`; None allows all."""
    global _allowed
    with _lock:
        _allowed = keys


def check_allowed(url: str, integrity: str, kind: FetchKind | str = FetchKind.FETCH) -> None:
    """Called before any download: LockfileError "fetch-not-locked" when a frozen build did not lock it."""
    with _lock:
        allowed = _allowed
    if allowed is not None and (FetchKind(kind).value, url, integrity) not in allowed:
        raise LockfileError(f"{FetchKind(kind).value}({url!r}) with {integrity} is not in tdx.lock",
                            hint="a --frozen build fetches only what tdx.lock pins: run `tdx lock` and commit it",
                            code="fetch-not-locked")


def record(url: str, integrity: str, *, kind: FetchKind | str = FetchKind.FETCH, rev: str | None = None,
           tag: str | None = None, name: str | None = None, resolved_at: str | None = None) -> FetchRecord:
    """Append a resolved fetch (unless the same one is already recorded) and return its record."""
    rec = FetchRecord(url=url, integrity=integrity, resolved_at=resolved_at or utc_now(),
                      kind=FetchKind(kind), rev=rev, tag=tag, name=name)
    with _lock:
        if rec.key in _seen:
            return next(r for r in _records if r.key == rec.key)
        _seen.add(rec.key)
        _records.append(rec)
    return rec


def recorded() -> list[FetchRecord]:
    """A copy of every record so far, in resolution order."""
    with _lock:
        return list(_records)


def clear() -> None:
    """Forget every record (tests; a new top-level evaluation)."""
    with _lock:
        _records.clear()
        _seen.clear()

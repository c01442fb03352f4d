"""`--offline` for one command run: no download starts, and what was missing is listed once (L2).

A command run with `--offline` calls `enable()`. From then on `download()` and `fetch_git_tree()`
refuse to reach the network (`refuse`), while callers that can go on without the bytes — `fetch()`
and `fetch_git()` during TDXfile evaluation, the locked modules' trees — `note()` what is missing
and carry on, so the CLI guard (`tdxstore/cli/app.py`) or the pre-build check (`realise.check_offline`)
raises one `offline-missing` error listing everything before any build. Local `file://` sources are
not the network and stay allowed. Nothing here reads or writes the store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tdxstore.errors import TdxError, TransferError

_lock = threading.Lock()
_enabled = False
_missing: list[str] = []
HINT = ("import a bundle that holds them (tdx store export on a connected machine, then tdx store import "
        "here), or run without --offline")


def enable(on: bool = True) -> None:
    """Start (or end) an offline run; forgets what an earlier run noted."""
    global _enabled
    with _lock:
        _enabled = on
        _missing.clear()


def enabled() -> bool:
    with _lock:
        return _enabled


def note(what: str) -> None:
    """Remember one thing an offline run would have had to download (once, in the order seen)."""
    with _lock:
        if what not in _missing:
            _missing.append(what)


def missing() -> list[str]:
    with _lock:
        return list(_missing)


def error(more: Sequence[str] = (), because: TdxError | BaseException | None = None) -> TransferError:
    """The one `offline-missing` error for what was noted plus `more` (and what stopped the run, if anything)."""
    items = list(dict.fromkeys([*missing(), *more]))
    detail = "\n".join(items)
    if because is not None:
        why = because.message if isinstance(because, TdxError) else f"{type(because).__name__}: {because}"
        detail += f"\n(the run stopped on: {why})"
    return TransferError(f"--offline: {len(items)} thing(s) would need the network and are not in the store",
                         detail=detail, code="offline-missing", hint=HINT)


def refuse(what: str) -> None:
    """Before a network access: in an offline run, note `what` and raise the one error."""
    if enabled():
        note(what)
        raise error()


def is_local(url: str) -> bool:
    return url.startswith("file://") or url.startswith("/")

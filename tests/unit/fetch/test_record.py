"""The fetch record: one entry per resolved resource, first timestamp kept, lockfile shape."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tdxstore.errors import UsageError
from tdxstore.fetch import record as rec

INTEGRITY = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    rec.clear()
    yield
    rec.clear()


def test_record_and_dedupe() -> None:
    first = rec.record("https://x/a", INTEGRITY, resolved_at="2026-02-22T10:30:00Z")
    again = rec.record("https://x/a", INTEGRITY)
    assert again == first and again.resolved_at == "2026-02-22T10:30:00Z"
    rec.record("https://x/r.git", INTEGRITY, kind="fetch_git", rev="c" * 40, tag="v1")
    got = rec.recorded()
    assert [r.kind for r in got] == [rec.FetchKind.FETCH, rec.FetchKind.FETCH_GIT]
    assert got[0].as_lock_entry() == {"url": "https://x/a", "integrity": INTEGRITY,
                                      "resolved_at": "2026-02-22T10:30:00Z"}
    assert got[1].as_lock_entry()["rev"] == "c" * 40
    assert got[1].as_lock_entry()["kind"] == "fetch_git"


def test_timestamp_is_utc_iso8601() -> None:
    r = rec.record("https://x/b", INTEGRITY)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.resolved_at)


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"integrity": "sha256:xyz"}, "bad-hash"),
    ({"resolved_at": "yesterday"}, "bad-timestamp"),
    ({"rev": "c" * 40}, "bad-record"),
])
def test_invalid_records(kwargs: dict[str, str], code: str) -> None:
    args = {"integrity": INTEGRITY, **kwargs}
    with pytest.raises(UsageError) as info:
        rec.record("https://x/c", **args)
    assert info.value.code == code
    assert rec.recorded() == []

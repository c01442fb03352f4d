"""parse_sha256 / format_sha256 / missing_hash_error: accepted spellings and a table of bad ones."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tdxstore.errors import UsageError
from tdxstore.fetch.hashspec import format_sha256, missing_hash_error, parse_sha256, sri_sha256

HEX = hashlib.sha256(b"hello").hexdigest()
SRI = "sha256-" + base64.b64encode(bytes.fromhex(HEX)).decode()


@pytest.mark.parametrize("text", [HEX, HEX.upper(), f"sha256:{HEX}", f"  sha256:{HEX}\n", SRI])
def test_accepted_spellings(text: str) -> None:
    assert parse_sha256(text) == HEX


def test_format_and_sri_round_trip() -> None:
    assert format_sha256(HEX) == f"sha256:{HEX}"
    assert sri_sha256(HEX) == SRI
    assert parse_sha256(sri_sha256(HEX)) == HEX


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("abc", "expected 64 hex digits, found 3"),
    ("sha256:" + "g" * 64, "not hex digits"),
    ("sha256:" + HEX[:-1], "found 63"),
    ("sha256-!!!notbase64", "not valid base64"),
    ("sha256-" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ("sha512-" + base64.b64encode(bytes(64)).decode(), "only SHA-256 is supported"),
    ("md5:" + "0" * 32, "only SHA-256 is supported"),
])
def test_malformed_hashes(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_sha256(text)
    assert info.value.code == "bad-hash"
    assert fragment in info.value.message
    assert info.value.hint and "tdx fetch --hash" in info.value.hint


def test_not_a_string() -> None:
    with pytest.raises(UsageError) as info:
        parse_sha256(123)  # type: ignore[arg-type]
    assert info.value.code == "bad-hash"


def test_missing_hash_error_shows_how_to_get_one() -> None:
    err = missing_hash_error("https://example.org/a.tar.gz")
    assert err.code == "missing-hash"
    assert err.hint is not None and "tdx fetch --hash https://example.org/a.tar.gz" in err.hint
    git_err = missing_hash_error("https://example.org/r.git", git=True)
    assert git_err.hint is not None and "tdx fetch --hash --git https://example.org/r.git" in git_err.hint

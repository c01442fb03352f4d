"""Parse and format the SHA-256 hashes users declare for fetched content (L2, no I/O).

Accepted spellings: 64 hex digits, `sha256:<hex>` and SRI `sha256-<base64>`; everything is
normalised to lower-case hex internally and shown to users as `sha256:<hex>`. This module never
touches the network or the store; a malformed hash is a UsageError with code "bad-hash".
"""

from __future__ import annotations

import base64
import binascii
import re

from tdxstore.errors import UsageError

DIGEST_SIZE = 32
HEX_LEN = 2 * DIGEST_SIZE
_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
_ACCEPTED = "64 hex digits, 'sha256:<hex>' or SRI 'sha256-<base64>'"


def _bad(text: str, why: str) -> UsageError:
    shown = text if len(text) <= 100 else text[:100] + "…"
    return UsageError(
        f"malformed SHA-256 hash {shown!r}: {why}",
        hint=f"write the hash as {_ACCEPTED}; `tdx fetch --hash URL` prints it",
        code="bad-hash",
    )


def _parse_hex(text: str, digits: str) -> str:
    if not _HEX_RE.fullmatch(digits):
        if len(digits) != HEX_LEN:
            raise _bad(text, f"expected {HEX_LEN} hex digits, found {len(digits)} characters")
        raise _bad(text, "it contains characters that are not hex digits")
    return digits.lower()


def _parse_sri(text: str, b64: str) -> str:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(text, "the part after 'sha256-' is not valid base64") from e
    if len(raw) != DIGEST_SIZE:
        raise _bad(text, f"the base64 part decodes to {len(raw)} bytes, a SHA-256 digest has {DIGEST_SIZE}")
    return raw.hex()


def parse_sha256(text: str) -> str:
    """Return the lower-case hex digest written in `text` (hex, `sha256:<hex>` or `sha256-<base64>`)."""
    if not isinstance(text, str):
        raise UsageError(
            f"a SHA-256 hash must be a string, not {type(text).__name__}",
            hint=f"write the hash as {_ACCEPTED}", code="bad-hash",
        )
    s = text.strip()
    if not s:
        raise _bad(text, "it is empty")
    if s.startswith("sha256:"):
        return _parse_hex(text, s[len("sha256:"):])
    if s.startswith("sha256-"):
        return _parse_sri(text, s[len("sha256-"):])
    algo = re.match(r"([A-Za-z0-9]+)[:-]", s)
    if algo and algo.group(1).lower() in {"md5", "sha1", "sha384", "sha512", "blake3"}:
        raise _bad(text, f"only SHA-256 is supported, not {algo.group(1)}")
    return _parse_hex(text, s)


def format_sha256(hex_digest: str) -> str:
    """`sha256:<hex>`: the one way a hash is shown to users and written to tdx.lock."""
    return f"sha256:{_parse_hex(hex_digest, hex_digest)}"


def sri_sha256(hex_digest: str) -> str:
    """The SRI form `sha256-<base64>` of a hex digest (what Nix prints)."""
    return "sha256-" + base64.b64encode(bytes.fromhex(_parse_hex(hex_digest, hex_digest))).decode()


def missing_hash_error(url: str, *, git: bool = False) -> UsageError:
    """The error raised when a fetch is declared without a hash; the hint shows how to get one."""
    if git:
        how = f"tdx fetch --hash --git {url} --tag TAG (or --rev COMMIT)"
        what = "fetch_git"
    else:
        how = f"tdx fetch --hash {url}"
        what = "fetch"
    return UsageError(
        f"{what}() of {url} has no sha256: every fetched resource must declare its hash",
        hint=f"run `{how}` and pass the printed value as sha256=",
        code="missing-hash",
    )

"""Transfer primitives (L2): verified downloads, git tree checkouts, hash syntax, the fetch record.

Nothing here imports the store; `tdxstore.builders.fetch` puts results into it. `record` stays
the submodule (`tdxstore.fetch.record.record(...)`), not re-exported, so the name is not shadowed.
"""

from __future__ import annotations

from tdxstore.fetch.download import check_url, download
from tdxstore.fetch.git import check_git_url, check_ref, fetch_git_tree
from tdxstore.fetch.hashspec import format_sha256, missing_hash_error, parse_sha256, sri_sha256
from tdxstore.fetch.record import FetchKind, FetchRecord, recorded

__all__ = [
    "FetchKind",
    "FetchRecord",
    "check_git_url",
    "check_ref",
    "check_url",
    "download",
    "fetch_git_tree",
    "format_sha256",
    "missing_hash_error",
    "parse_sha256",
    "recorded",
    "sri_sha256",
]

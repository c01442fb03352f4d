"""`tdx.builders.rust`: RustBuild (spec §4.2), cargo offline with Debian's rustc and crates."""

from __future__ import annotations

from tdxstore.builders.rust import RustBuild

__all__ = ["RustBuild"]

"""`tdx.builders.rust`: RustBuild (spec §7); not available yet, see tdxstore/builders/pending.py."""

from __future__ import annotations

from tdxstore.builders.pending import RustBuild

__all__ = ["RustBuild"]

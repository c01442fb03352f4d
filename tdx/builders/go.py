"""`tdx.builders.go`: GoBuild (spec §4.1); GoFromSource is not available yet (tdxstore/builders/pending.py)."""

from __future__ import annotations

from tdxstore.builders.go import GoBuild
from tdxstore.builders.pending import GoFromSource

__all__ = ["GoBuild", "GoFromSource"]

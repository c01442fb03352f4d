"""`tdx.builders.go`: GoBuild, GoFromSource (spec §7); not available yet, see tdxstore/builders/pending.py."""

from __future__ import annotations

from tdxstore.builders.pending import GoBuild, GoFromSource

__all__ = ["GoBuild", "GoFromSource"]

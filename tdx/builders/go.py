"""`tdx.builders.go`: GoBuild (spec §4.1); GoFromSource is not available yet (tdxstore/builders/pending.py)."""

from __future__ import annotations

from tdxstore.builders.go import GoBuild
from tdxstore.builders.pending import GoFromSource
from tdxstore.builders.toolchain import DebianToolchain, debian_go

__all__ = ["DebianToolchain", "GoBuild", "GoFromSource", "debian_go"]

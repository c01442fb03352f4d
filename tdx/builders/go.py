"""`tdx.builders.go`: GoBuild and GoFromSource (spec §4.1), re-exported from tdxstore.builders."""

from __future__ import annotations

from tdxstore.builders.go import GoBuild
from tdxstore.builders.gosource import GoFromSource
from tdxstore.builders.toolchain import DebianToolchain, debian_go

__all__ = ["DebianToolchain", "GoBuild", "GoFromSource", "debian_go"]

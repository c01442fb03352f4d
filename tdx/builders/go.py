"""`tdx.builders.go`: GoBuild and GoFromSource (spec §4.1), re-exported from tdxstore.builders."""

from __future__ import annotations

from tdxstore.builders.go import GoBuild
from tdxstore.builders.gosource import GoFromSource

__all__ = ["GoBuild", "GoFromSource"]

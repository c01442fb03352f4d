"""`tdx.builders.script`: `Build.script(...)` (spec §4.6), the same object as `tdx.Build`."""

from __future__ import annotations

from tdxstore.builders.build import Build

__all__ = ["Build"]

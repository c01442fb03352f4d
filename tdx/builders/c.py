"""`tdx.builders.c`: CBuild (spec §4.4), a make/C/C++ build on a Debian build root."""

from __future__ import annotations

from tdxstore.builders.c import CBuild

__all__ = ["CBuild"]

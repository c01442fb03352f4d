"""`tdx.builders.c`: CBuild (spec §7); not available yet, see tdxstore/builders/pending.py."""

from __future__ import annotations

from tdxstore.builders.pending import CBuild

__all__ = ["CBuild"]

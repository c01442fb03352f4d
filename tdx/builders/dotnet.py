"""`tdx.builders.dotnet`: DotnetBuild (spec §7); not available yet, see tdxstore/builders/pending.py."""

from __future__ import annotations

from tdxstore.builders.pending import DotnetBuild

__all__ = ["DotnetBuild"]

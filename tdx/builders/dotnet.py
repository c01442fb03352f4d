"""`tdx.builders.dotnet`: DotnetBuild (spec §4.3), refused: no .NET SDK is obtainable (tdxstore/builders/dotnet.py)."""

from __future__ import annotations

from tdxstore.builders.dotnet import DotnetBuild

__all__ = ["DotnetBuild"]

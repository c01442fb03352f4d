"""`Build`: the spec's constructor namespace (§2, §3.2, §4.6): `Build.script`, and the typed shorthands.

`Build.go(...)`, `Build.c(...)`, `Build.rust(...)` and `Build.dotnet(...)` are the typed builders under
another spelling (same parameters, same objects); this module only wires them, so `script.py` keeps
no import of the builders that are lowered to it.
"""

from __future__ import annotations

from typing import Any

from tdxstore.builders.c import CBuild
from tdxstore.builders.dotnet import DotnetBuild
from tdxstore.builders.go import GoBuild
from tdxstore.builders.rust import RustBuild
from tdxstore.builders.script import Build as _ScriptNamespace


class Build(_ScriptNamespace):
    """`Build.script(...)` plus `Build.go/c/rust/dotnet(...)`."""

    @staticmethod
    def go(**kwargs: Any) -> GoBuild:
        """A `GoBuild` (spec §4.1)."""
        return GoBuild(**kwargs)

    @staticmethod
    def c(**kwargs: Any) -> CBuild:
        """A `CBuild` (spec §4.4)."""
        return CBuild(**kwargs)

    @staticmethod
    def rust(**kwargs: Any) -> RustBuild:
        """A `RustBuild` (spec §4.2)."""
        return RustBuild(**kwargs)

    @staticmethod
    def dotnet(**kwargs: Any) -> DotnetBuild:
        """A `DotnetBuild` (spec §4.3): refused here, no .NET SDK is obtainable."""
        return DotnetBuild(**kwargs)

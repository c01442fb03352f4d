"""The typed builders the spec names (§7) that are not built yet (L4): importable, refusing when used.

`from tdx.builders.go import GoBuild` works today, so a module written against the spec imports;
constructing one raises BuildError "builder-unavailable" naming the issue that brings it, never an
ImportError or a silently empty build. Each class is replaced by the real builder when it lands.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tdxstore.errors import BuildError

BUILDERS_ISSUE = 19  # "Standard builder modules: Build.script, Go, Rust, C/C++ and .NET builds"


class _Pending:
    """A builder that is not available yet: constructing it raises."""

    facade: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        raise BuildError(f"{name} ({self.facade}) is not available yet",
                         hint=f"typed builders arrive with issue {BUILDERS_ISSUE} (hermetic Debian build "
                              "roots); until then pass a tdxstore Derivation to image.build()",
                         code="builder-unavailable")


class RustBuild(_Pending):
    facade = "tdx.builders.rust"


class DotnetBuild(_Pending):
    facade = "tdx.builders.dotnet"



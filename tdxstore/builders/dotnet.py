"""`DotnetBuild` (spec §4.3): refused with the reason, since no .NET SDK can be obtained where tdx is built.

No registry reachable here (Debian, PyPI) ships a .NET SDK (FINDINGS.md: ".NET"), so no SDK store path,
no pinned SDK hash and no offline NuGet restore could be made or tested. Constructing one raises
`dotnet-sdk-unavailable` naming that and the way round it: a `Build.script` on a `compiler=` store
path holding an SDK (a `fetch()` of the SDK tarball) with `dotnet publish` offline.
"""

from __future__ import annotations

from typing import Any

from tdxstore.errors import BuildError

HINT = ("no .NET SDK is pinned or obtainable from Debian or PyPI; fetch() an SDK tarball with its sha256 "
        "and run `dotnet publish --source <restored packages dir>` offline in a Build.script, or "
        "publish outside tdx and add the result with image.file()")


class DotnetBuild:
    """Accepts the spec's parameters (sdk_version, src, project, output, self_contained, ...) and refuses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        sdk = kwargs.get("sdk_version", "?")
        raise BuildError(f"DotnetBuild (tdx.builders.dotnet): no .NET SDK {sdk} is available to build with",
                         hint=HINT, code="dotnet-sdk-unavailable")

"""DotnetBuild is refused with the reason (no .NET SDK obtainable here) and what to do instead."""

from __future__ import annotations

import pytest

from tdx import Build
from tdx.builders.dotnet import DotnetBuild
from tdxstore.errors import BuildError


@pytest.mark.parametrize("make", [DotnetBuild, Build.dotnet])
def test_dotnet_is_refused_naming_why_and_what_to_do(make: object) -> None:
    with pytest.raises(BuildError) as err:
        make(sdk_version="10.0", src="./nethermind/", project="src/Nethermind/Nethermind.Runner",  # type: ignore[operator]
             output="/opt/nethermind/", self_contained=True)
    assert err.value.code == "dotnet-sdk-unavailable" and "10.0" in err.value.message
    assert "fetch()" in (err.value.hint or "") and "Build.script" in (err.value.hint or "")

"""The spec's typed builders import from `tdx.builders.*` and refuse clearly until issue 19 lands."""

from __future__ import annotations

import importlib

import pytest

from tdxstore.errors import BuildError

FACADE = {"go": ["GoFromSource"]}  # RustBuild, DotnetBuild: test_rust_build.py, test_dotnet_build.py


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in FACADE.items() for n in names])
def test_pending_builder_imports_and_refuses(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(f"tdx.builders.{module}"), name)
    with pytest.raises(BuildError) as err:
        cls(name="x", src="./x")
    assert err.value.code == "builder-unavailable"
    assert f"{name} (tdx.builders.{module}) is not available yet" == err.value.message
    assert "issue 19" in (err.value.hint or "")


def test_script_builder_is_tdx_build() -> None:
    from tdx import Build
    from tdx.builders.script import Build as ScriptBuild

    assert ScriptBuild is Build

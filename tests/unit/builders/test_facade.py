"""The spec's typed builders import from `tdx.builders.*` and are the real builders, none a placeholder."""

from __future__ import annotations

import importlib

import pytest

FACADE = {
    "go": ("GoBuild", "tdxstore.builders.go"), "c": ("CBuild", "tdxstore.builders.c"),
    "rust": ("RustBuild", "tdxstore.builders.rust"), "dotnet": ("DotnetBuild", "tdxstore.builders.dotnet"),
}


@pytest.mark.parametrize("module", sorted(FACADE))
def test_facade_names_the_real_builder(module: str) -> None:
    name, home = FACADE[module]
    cls = getattr(importlib.import_module(f"tdx.builders.{module}"), name)
    assert cls.__module__ == home


def test_go_from_source_is_the_bootstrap_chain() -> None:
    from tdx.builders.go import GoFromSource

    assert GoFromSource.__module__ == "tdxstore.builders.gosource"


def test_script_builder_is_tdx_build() -> None:
    from tdx import Build
    from tdx.builders.script import Build as ScriptBuild

    assert ScriptBuild is Build

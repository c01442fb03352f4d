"""DotnetBuild: refused without an SDK (none is obtainable here); with one, the restore and publish
derivations and their command lines. No SDK ever ran here, so the commands are what is tested."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdx import Build
from tdx.builders.dotnet import DotnetBuild
from tdxstore.errors import BuildError
from tdxstore.sandbox import process
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

SPEC = {"sdk_version": "10.0", "src": "./nethermind/", "project": "src/Nethermind/Nethermind.Runner",
        "output": "/opt/nethermind/", "self_contained": True}
PINNED = "1" * 64


@pytest.mark.parametrize("make", [DotnetBuild, Build.dotnet])
def test_without_an_sdk_it_is_refused_naming_why_and_what_to_do(make: object) -> None:
    with pytest.raises(BuildError) as err:
        make(**SPEC)  # type: ignore[operator]
    assert err.value.code == "dotnet-sdk-unavailable" and "10.0" in err.value.message
    assert "fetch()" in (err.value.hint or "") and "compiler=" in (err.value.hint or "")


def _sdk_and_source(store: Store, tmp_path: Path) -> StorePath:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "dotnet").write_text("#!/bin/sh\nexit 1\n")
    (sdk / "dotnet").chmod(0o755)
    runner = tmp_path / "nethermind" / "src" / "Nethermind" / "Nethermind.Runner"
    runner.mkdir(parents=True)
    (runner / "Nethermind.Runner.csproj").write_text("<Project Sdk=\"Microsoft.NET.Sdk\"></Project>\n")
    return store.add_path(sdk, "dotnet-sdk-10.0")


def _restore(drv: Derivation) -> Derivation:
    restores = [d for d in drv.inputs if isinstance(d, Derivation) and d.fixed is not None]
    assert len(restores) == 1, drv.inputs
    return restores[0]


def test_publish_runs_offline_from_a_fixed_output_restore(store: Store, tmp_path: Path) -> None:
    sdk = _sdk_and_source(store, tmp_path)
    build = DotnetBuild(**SPEC, compiler=sdk, packages_hash=PINNED)  # type: ignore[arg-type]
    drv = build.derivation_on(store, sdk, base=tmp_path)
    restore = _restore(drv)
    assert restore.fixed is not None and restore.fixed.recursive and restore.fixed.sha256 == PINNED
    script = restore.args[-1]
    assert ('dotnet restore src/Nethermind/Nethermind.Runner --packages "$out" --runtime linux-x64 '
            '--source https://api.nuget.org/v3/index.json --locked-mode') in script
    env = drv.env_dict()
    assert env["NUGET_PACKAGES"] == restore.out.logical and env["DOTNET_ROOT"] == sdk.logical
    assert env["DOTNET_CLI_TELEMETRY_OPTOUT"] == "1" and env["OUTPUT"] == "/opt/nethermind"
    publish = env["BUILD_SCRIPT"]
    assert ('dotnet publish src/Nethermind/Nethermind.Runner --configuration Release --runtime linux-x64 '
            '--self-contained true --no-restore --source "$NUGET_PACKAGES" --output "$DESTDIR/opt/nethermind" '
            '-p:Deterministic=true -p:ContinuousIntegrationBuild=true') in publish
    assert sdk in drv.inputs and build.image_paths == ("/opt/nethermind",)
    for text in (script, publish):  # both are valid shell
        process.run(["/bin/sh", "-n", "-c", text], what="sh -n")


def test_framework_dependent_and_loose_builds_change_the_command(store: Store, tmp_path: Path) -> None:
    sdk = _sdk_and_source(store, tmp_path)
    spec = {**SPEC, "self_contained": False}
    publish = DotnetBuild(**spec, compiler=sdk, packages_hash=PINNED, reproducible=False).publish_argv()  # type: ignore[arg-type]
    assert publish[publish.index("--self-contained") + 1] == "false"
    assert "-p:Deterministic=true" not in publish


def test_an_unpinned_restore_is_one_error_saying_how_to_pin_it(store: Store, tmp_path: Path) -> None:
    sdk = _sdk_and_source(store, tmp_path)
    with pytest.raises(BuildError) as err:
        DotnetBuild(**SPEC, compiler=sdk).derivation_on(store, sdk, base=tmp_path)  # type: ignore[arg-type]
    assert err.value.code == "dotnet-packages-unpinned" and "'0'*64" in (err.value.hint or "")


@pytest.mark.parametrize(("change", "code"), [
    ({"project": "../elsewhere"}, "invalid-build"),
    ({"project": "/abs/proj"}, "invalid-build"),
    ({"output": "opt/x"}, "invalid-build"),
    ({"compiler": "/usr/lib/dotnet"}, "invalid-build"),
])
def test_bad_parameters_are_one_error(store: Store, tmp_path: Path, change: dict[str, object], code: str) -> None:
    sdk = _sdk_and_source(store, tmp_path)
    with pytest.raises(BuildError) as err:
        DotnetBuild(**{**SPEC, "compiler": sdk, **change})  # type: ignore[arg-type]
    assert err.value.code == code

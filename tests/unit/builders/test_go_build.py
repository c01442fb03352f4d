"""GoBuild's declaration: unpinned versions, go.sum, module pins, and the flags of its derivations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdx.builders.go import GoBuild
from tdxstore.errors import BuildError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


def _goroot(store: Store, tmp_path: Path) -> StorePath:
    (tmp_path / "goroot" / "bin").mkdir(parents=True)
    (tmp_path / "goroot" / "bin" / "go").write_text("#!/bin/sh\n")
    return store.add_path(tmp_path / "goroot", "goroot")


def _app(tmp_path: Path, requires: bool, sums: bool) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text("module x\n\ngo 1.22\n" + ("require example.com/a v1.0.0\n" if requires else ""))
    (app / "main.go").write_text("package main\nfunc main() {}\n")
    if sums:
        (app / "go.sum").write_text("example.com/a v1.0.0 h1:x=\n")
    return app


def test_unknown_version_says_how_to_pass_compiler() -> None:
    with pytest.raises(BuildError) as err:
        GoBuild(version="1.22.5", src="./app/", output="/usr/local/bin/app")
    assert err.value.code == "go-version-unpinned" and "compiler=" in (err.value.hint or "")


def test_flags_and_offline_env(store: Store, root: StorePath, tmp_path: Path) -> None:
    go = _goroot(store, tmp_path)
    _app(tmp_path, requires=False, sums=False)
    drv = GoBuild(src="./app/", output="/usr/local/bin/app", compiler=go, ldflags="-s -w").derivation_on(
        store, root, base=tmp_path)
    env = drv.env_dict()
    assert (env["GOPROXY"], env["GOFLAGS"], env["GOTOOLCHAIN"], env["SOURCE_DATE_EPOCH"]) == (
        "off", "-mod=readonly", "local", "0")
    assert '-trimpath' in env["BUILD_SCRIPT"] and '-ldflags "-buildid= -s -w"' in env["BUILD_SCRIPT"]
    assert drv.fixed is None and go in drv.inputs and not [i for i in drv.input_drvs if i.fixed]
    loose = GoBuild(src="./app/", output="/usr/local/bin/app", compiler=go, reproducible=False).derivation_on(
        store, root, base=tmp_path).env_dict()
    assert "-trimpath" not in loose["BUILD_SCRIPT"] and "-buildid=" not in loose["BUILD_SCRIPT"]


def test_module_step_is_fixed_output_keyed_by_its_pin(store: Store, root: StorePath, tmp_path: Path) -> None:
    go = _goroot(store, tmp_path)
    _app(tmp_path, requires=True, sums=True)
    drv = GoBuild(src="./app/", output="/usr/local/bin/app", compiler=go, modules_hash="a" * 64,
                  goproxy="http://127.0.0.1:1").derivation_on(store, root, base=tmp_path)
    (mods,) = [i for i in drv.input_drvs if i.fixed]
    assert mods.fixed is not None and mods.fixed.sha256 == "a" * 64 and mods.fixed.recursive
    assert drv.env_dict()["GOMODCACHE"] == mods.out.logical
    other_proxy = GoBuild(src="./app/", output="/usr/local/bin/app", compiler=go, modules_hash="a" * 64,
                          goproxy="http://127.0.0.1:2").derivation_on(store, root, base=tmp_path)
    assert other_proxy.out == drv.out  # the proxy is not an input of the build


@pytest.mark.parametrize(("sums", "pin", "code"), [(False, "a" * 64, "go-sum-missing"),
                                                   (True, None, "go-modules-unpinned")])
def test_dependencies_need_go_sum_and_a_pin(store: Store, root: StorePath, tmp_path: Path, sums: bool,
                                            pin: str | None, code: str) -> None:
    go = _goroot(store, tmp_path)
    _app(tmp_path, requires=True, sums=sums)
    with pytest.raises(BuildError) as err:
        GoBuild(src="./app/", output="/usr/local/bin/app", compiler=go, modules_hash=pin).derivation_on(
            store, root, base=tmp_path)
    assert err.value.code == code

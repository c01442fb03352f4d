"""Declared Debian toolchains (`debian_go`) and the Build shorthands of spec §2/§3.2."""

from __future__ import annotations

import pytest

from tdx import Build
from tdx.builders.c import CBuild
from tdx.builders.go import DebianToolchain, GoBuild, debian_go
from tdxstore.builders import toolchain
from tdxstore.errors import BuildError
from tdxstore.packages import toolchain as packaged
from tdxstore.store.path import StorePath


def test_debian_go_names_the_package_and_goroot_the_packages_layer_uses() -> None:
    for version, (package, goroot) in packaged.DEBIAN_GO.items():
        tc = debian_go(version)
        assert tc == DebianToolchain((f"{package}/bookworm-backports",), goroot, f"go-{version}")
    assert set(toolchain.DEBIAN_GO) == set(packaged.DEBIAN_GO)


@pytest.mark.parametrize(("make", "code"), [
    (lambda: debian_go("1.99"), "go-version-unpinned"),
    (lambda: GoBuild(src="./a/", output="/usr/local/bin/a", compiler="go1.22"), "invalid-build"),
    (lambda: DebianToolchain(("Not A Package",), "/usr/lib/go", "go"), "invalid-build"),
    (lambda: DebianToolchain(("golang-go",), "usr/lib/go", "go"), "invalid-build"),
])
def test_unknown_or_malformed_compilers_are_one_error(make: object, code: str) -> None:
    with pytest.raises(BuildError) as err:
        make()  # type: ignore[operator]
    assert err.value.code == code


def test_an_unrealised_toolchain_is_refused_by_the_builder_not_looked_up_on_the_host() -> None:
    g = GoBuild(src="./a/", output="/usr/local/bin/a", compiler=debian_go("1.22"))
    with pytest.raises(BuildError) as err:
        g.goroot_on(StorePath.from_base_name("0" * 32 + "-root"))
    assert err.value.code == "toolchain-unrealised"


def test_shorthands_are_the_typed_builders() -> None:
    go = debian_go("1.22")
    assert Build.go(src="./a/", output="/usr/local/bin/a", compiler=go) == GoBuild(
        src="./a/", output="/usr/local/bin/a", compiler=go)
    assert Build.c(src="./c/", artifacts={"b/x": "/usr/bin/x"}) == CBuild(src="./c/", artifacts={"b/x": "/usr/bin/x"})
    assert Build.script(name="s", src=".", build_script="true", output="/x").name == "s"

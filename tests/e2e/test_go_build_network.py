"""GoBuild with Debian's Go 1.22 as `compiler=` and one module from a local module proxy on 127.0.0.1.

Marked `network`: the Go toolchain (golang-1.22-go from bookworm-backports), the build root and the
indexes land in the persistent test store (TDX_TEST_STORE, default /var/tmp/tdx-test-store). The
module download runs against the test's own proxy; the build itself is offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.builders.go import GoBuild
from tdxstore.errors import BuildError, HashMismatchError
from tdxstore.packages import Mirrors, fetch_suite, resolve
from tdxstore.packages.root import BUILD_ESSENTIAL, realise_build_root
from tdxstore.packages.toolchain import DEBIAN_GO, realise_toolchain
from tdxstore.sandbox import process
from tdxstore.store.gc import delete_paths
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.debrepo import ArchiveServer
from tests.goproxy import add_module

pytestmark = [pytest.mark.network, pytest.mark.needs_bwrap]
MIRROR = "http://deb.debian.org/debian"
MAIN_GO = ('package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
           'func main() { fmt.Println(greet.Hello()) }\n')
GREET = {"go.mod": "module example.com/greet\n\ngo 1.22\n",
         "greet.go": 'package greet\n\nfunc Hello() string { return "hello from a proxied module" }\n'}


@pytest.fixture(scope="module")
def go_and_root(shared: Store) -> tuple[StorePath, StorePath]:
    bookworm = fetch_suite(shared, MIRROR, "bookworm")
    backports = fetch_suite(shared, MIRROR, "bookworm-backports")
    tools = resolve(shared, [bookworm], ["busybox-static"], base=())
    package, goroot = DEBIAN_GO["1.22"]
    go_set = resolve(shared, [bookworm, backports], [f"{package}/bookworm-backports"], base=())
    go = realise_toolchain(shared, go_set, tools, Mirrors({"debian": MIRROR}), prefix=goroot, name="go-1.22")
    root = realise_build_root(shared, resolve(shared, [bookworm], list(BUILD_ESSENTIAL)), tools,
                              Mirrors({"debian": MIRROR}))
    return go, root


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[ArchiveServer, list[str]]]:
    lines = add_module(tmp_path / "proxy", "example.com/greet", "v1.0.0", GREET)
    srv = ArchiveServer(tmp_path / "proxy")
    yield srv, lines
    srv.stop()


def _app(where: Path, sums: list[str] | None) -> Path:
    where.mkdir(parents=True)
    (where / "go.mod").write_text("module example.com/hello\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n")
    (where / "main.go").write_text(MAIN_GO)
    if sums is not None:
        (where / "go.sum").write_text("".join(line + "\n" for line in sums))
    return where


def _modules_hash(shared: Store, build: GoBuild, root: StorePath, base: Path) -> str:
    """The hash-mismatch of a placeholder pin shows the real one: the workflow the error's hint gives."""
    try:
        realise(shared, [build.derivation_on(shared, root, base=base)])
    except HashMismatchError as e:
        return e.got.removeprefix("sha256:")
    raise AssertionError("a placeholder modules_hash was accepted")


def test_go_build_with_a_proxied_module_runs_and_is_bit_for_bit(
        shared: Store, go_and_root: tuple[StorePath, StorePath], proxy: tuple[ArchiveServer, list[str]],
        tmp_path: Path) -> None:
    go, root = go_and_root
    srv, sums = proxy
    _app(tmp_path / "a" / "app", sums)
    common = {"src": "./app/", "output": "/usr/local/bin/hello", "compiler": go, "goproxy": srv.url,
              "ldflags": "-s -w -X main.version=1.0.0"}
    pinned = _modules_hash(shared, GoBuild(**common, modules_hash="0" * 64), root, tmp_path / "a")  # type: ignore[arg-type]
    build = GoBuild(**common, modules_hash=pinned)  # type: ignore[arg-type]
    drv = build.derivation_on(shared, root, base=tmp_path / "a")
    if shared.is_valid(drv.out):
        delete_paths(shared, [drv.out])
    realise(shared, [drv])
    binary = shared.real_path(drv.out) / "usr/local/bin/hello"
    assert process.run([os.fspath(binary)], what="hello").stdout == b"hello from a proxied module\n"
    assert b"/build/src" not in binary.read_bytes()  # -trimpath
    first = shared.query(drv.out).nar_hash
    # another location, another time, the proxy gone: the module step is a lookup, the build the same bytes
    srv.stop()
    _app(tmp_path / "b" / "app", sums)
    again = build.derivation_on(shared, root, base=tmp_path / "b")
    assert again.out == drv.out
    delete_paths(shared, [drv.out])
    realise(shared, [again])
    assert shared.query(again.out).nar_hash == first


def test_missing_go_sum_is_one_clear_error(shared: Store, go_and_root: tuple[StorePath, StorePath],
                                           tmp_path: Path) -> None:
    go, root = go_and_root
    _app(tmp_path / "app", None)
    with pytest.raises(BuildError) as err:
        GoBuild(src=str(tmp_path / "app"), output="/usr/local/bin/hello", compiler=go,
                modules_hash="0" * 64).derivation_on(shared, root)
    assert err.value.code == "go-sum-missing"

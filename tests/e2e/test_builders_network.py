"""Script and C builds on a real Debian build root (bookworm build-essential from deb.debian.org).

Marked `network`: the indexes, .deb files and the root land in the persistent test store
(TDX_TEST_STORE, default /var/tmp/tdx-test-store), so after the first run nothing but the InRelease
is downloaded. The builds themselves run offline in the sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tdxstore.builders.c import CBuild
from tdxstore.builders.script import Build, script_derivation
from tdxstore.errors import BuildError
from tdxstore.packages import Mirrors, fetch_suite, resolve
from tdxstore.packages.root import realise_build_root
from tdxstore.sandbox import process
from tdxstore.store.gc import delete_paths
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

pytestmark = [pytest.mark.network, pytest.mark.needs_bwrap]
MIRROR = "http://deb.debian.org/debian"
MAIN_C = '#include <stdio.h>\nint main(void) { printf("built by make from %s\\n", __FILE__); return 0; }\n'
MAKEFILE = "build/hello: hello.c\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -g -o $@ $(CURDIR)/hello.c\n"


@pytest.fixture(scope="module")
def build_root(shared: Store) -> StorePath:
    idx = fetch_suite(shared, MIRROR, "bookworm")
    pkgs = resolve(shared, [idx], list(CBuild(src=".", artifacts={"a": "/a"}).root_packages))
    tools = resolve(shared, [idx], ["busybox-static"], base=())
    return realise_build_root(shared, pkgs, tools, Mirrors({"debian": MIRROR}))


def _c_project(where: Path, source: str = MAIN_C) -> Path:
    where.mkdir(parents=True)
    (where / "hello.c").write_text(source)
    (where / "Makefile").write_text(MAKEFILE)
    return where


def _run(store: Store, out: StorePath, rel: str) -> str:
    return process.run([os.fspath(store.real_path(out) / rel)], what="the built program").stdout.decode()


def test_c_with_make_compiles_runs_and_rebuilds_bit_for_bit(shared: Store, build_root: StorePath,
                                                            tmp_path: Path) -> None:
    _c_project(tmp_path / "a" / "hello")
    build = CBuild(src="./hello/", artifacts={"build/hello": "/usr/local/bin/hello"})
    drv = build.derivation_on(shared, build_root, base=tmp_path / "a")
    if shared.is_valid(drv.out):
        delete_paths(shared, [drv.out])  # an earlier run's output: build it again here
    realise(shared, [drv])
    assert _run(shared, drv.out, "usr/local/bin/hello") == "built by make from ./hello.c\n"
    first = shared.query(drv.out).nar_hash
    # the same source at another location, built again later: the same derivation and the same bytes
    _c_project(tmp_path / "b" / "elsewhere" / "hello")
    again = build.derivation_on(shared, build_root, base=tmp_path / "b" / "elsewhere")
    assert again.out == drv.out
    delete_paths(shared, [drv.out])
    realise(shared, [again])
    assert shared.query(again.out).nar_hash == first
    # without the flags the build directory reaches the binary (__FILE__ under $(CURDIR), debug info)
    loose = CBuild(src="./hello/", artifacts={"build/hello": "/usr/local/bin/hello"}, reproducible=False)
    ldrv = loose.derivation_on(shared, build_root, base=tmp_path / "a")
    realise(shared, [ldrv])
    assert _run(shared, ldrv.out, "usr/local/bin/hello") == "built by make from /build/src/hello.c\n"


def test_compiler_error_shows_the_compilers_lines(shared: Store, build_root: StorePath, tmp_path: Path) -> None:
    _c_project(tmp_path / "bad", "int main(void) { return undeclared_thing; }\n")
    build = CBuild(src=str(tmp_path / "bad"), artifacts={"build/hello": "/usr/local/bin/hello"}, name="bad-c")
    with pytest.raises(BuildError) as err:
        realise(shared, [build.derivation_on(shared, build_root)])
    assert err.value.code == "build-failed"
    assert "error: 'undeclared_thing' undeclared" in (err.value.detail or "")


def test_script_build_destdir_with_gcc(shared: Store, build_root: StorePath, tmp_path: Path) -> None:
    _c_project(tmp_path / "app")
    b = Build.script(name="my-app", src="./app/", output="/usr/local/bin/my-app",
                     build_script="mkdir -p $DESTDIR/usr/local/bin && gcc $CFLAGS -o $DESTDIR/usr/local/bin/my-app "
                                  "$PWD/hello.c")
    drv = script_derivation(shared, b, build_root, base=tmp_path)
    realise(shared, [drv])
    assert _run(shared, drv.out, "usr/local/bin/my-app") == "built by make from ./hello.c\n"

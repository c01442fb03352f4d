"""Bit for bit: a GoBuild (Debian's Go 1.22, one proxied module) and a make CBuild, each built in two empty
stores from sources at different locations with different file times, give the same output NAR hash.

Everything is fetched twice from deb.debian.org (the build root, the toolchain, the .debs), about 0.7 GB a
store; both stores are removed at the end. Marked slow.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.builders.c import CBuild
from tdxstore.builders.go import GoBuild
from tdxstore.builders.toolchain import debian_go
from tdxstore.cli.builds import Lowering
from tdxstore.errors import HashMismatchError
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.debrepo import ArchiveServer
from tests.goproxy import add_module

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]
GREET = {"go.mod": "module example.com/greet\n\ngo 1.22\n",
         "greet.go": 'package greet\n\nfunc Hello() string { return "same bytes" }\n'}


def _sources(where: Path, sums: list[str], mtime: int) -> Path:
    files = {"g/go.mod": "module example.com/g\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
             "g/go.sum": "".join(line + "\n" for line in sums),
             "g/main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
                          "func main() { fmt.Println(greet.Hello()) }\n",
             "c/hello.c": '#include <stdio.h>\nint main(void) { printf("%s\\n", __FILE__); return 0; }\n',
             "c/Makefile": "build/hello: hello.c\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -g -o $@ $(CURDIR)/hello.c\n"}
    for rel, text in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
        os.utime(where / rel, (mtime, mtime))
    return where


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    sums = add_module(tmp_path / "proxy", "example.com/greet", "v1.0.0", GREET)
    srv = ArchiveServer(tmp_path / "proxy")
    yield srv.url, sums
    srv.stop()


def _build(home: Path, src: Path, url: str, reproducible: bool) -> dict[str, tuple[str, bool]]:
    """(NAR hash, whether the program names /build/src) of each build in the store at `home`.

    The modules pin is found by its documented workflow (a placeholder, then `Got:`).
    """
    store = Store.open(home)
    try:
        lower = Lowering(store, src)
        go = GoBuild(src="./g/", output="/usr/local/bin/g", compiler=debian_go("1.22"), goproxy=url,
                     modules_hash="0" * 64, reproducible=reproducible)
        try:
            realise(store, [lower(go)])
        except HashMismatchError as e:
            go = GoBuild(src="./g/", output="/usr/local/bin/g", compiler=debian_go("1.22"), goproxy=url,
                         modules_hash=e.got.removeprefix("sha256:"), reproducible=reproducible)
        c = CBuild(src="./c/", artifacts={"build/hello": "/usr/local/bin/hello"}, reproducible=reproducible)
        drvs = [lower(go), lower(c)]
        realise(store, drvs)
        return {d.name: (store.query(d.out).nar_hash, _names_build_dir(store.real_path(d.out))) for d in drvs}
    finally:
        store.close()


def _names_build_dir(out: Path) -> bool:
    return any(b"/build/src" in f.read_bytes() for f in (out / "usr/local/bin").iterdir())


def test_two_empty_stores_give_the_same_nar_hashes(proxy: tuple[str, list[str]], tmp_path: Path) -> None:
    url, sums = proxy
    a = _sources(tmp_path / "a", sums, 1_000_000_000)
    b = _sources(tmp_path / "somewhere" / "else" / "b", sums, 1_700_000_000)
    homes = [tmp_path / "store-a", tmp_path / "store-b"]
    try:
        first = _build(homes[0], a, url, True)
        second = _build(homes[1], b, url, True)
        assert first == second and set(first) == {"g", "c"}
        # reproducible=False drops -trimpath, -buildid= and the prefix maps, yet the NAR hashes still agree:
        # the sandbox always builds at /build/src with a declared environment, so no host path or time
        # leaks. What the flags remove is the sandbox path itself, which the loose programs carry:
        loose_a, loose_b = _build(homes[0], a, url, False), _build(homes[1], b, url, False)
        assert loose_a == loose_b
        assert not any(names for _, names in first.values()) and all(names for _, names in loose_a.values())
    finally:
        for home in homes:
            if home.exists():
                _remove(home)


def _remove(tree: Path) -> None:
    """Store paths are read-only: make directories writable, then delete (the stores hold ~0.7 GB each)."""
    for dirpath, dirnames, _ in os.walk(tree):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(tree)

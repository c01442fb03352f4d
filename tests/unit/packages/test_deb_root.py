"""Build roots from a locked set, offline: merged /usr, base-passwd's templates, usable as a sandbox root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.errors import PackageError
from tdxstore.packages.index import Mirrors, fetch_suite
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.resolve import resolve
from tdxstore.packages.root import realise_build_root
from tdxstore.store.derivation import derivation
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.debrepo import Archive, ArchiveServer, Pkg, TestKey

pytestmark = pytest.mark.needs_bwrap
BUSYBOX = Path("/bin/busybox").read_bytes()


@pytest.fixture
def root_server(tmp_path: Path, test_key: TestKey) -> Iterator[ArchiveServer]:
    a = Archive(tmp_path / "archive", test_key)
    a.add_suite("testing", [
        Pkg("base-files", "13", files={"etc/os-release": b"ID=test\n"}),
        Pkg("base-passwd", "3.6", essential=True, files={
            "usr/share/base-passwd/passwd.master": b"root:x:0:0:root:/root:/bin/sh\n",
            "usr/share/base-passwd/group.master": b"root:x:0:\n"}),
        Pkg("shell", "1", essential=True, files={"bin/sh": BUSYBOX, "usr/bin/cat": BUSYBOX}),
        Pkg("tool", "2", files={"bin/tool": b"#!/bin/sh\necho tool ran\n", "lib/libtool.txt": b"lib\n"}),
        Pkg("busybox-static", "1:1.35.0-4", files={"bin/busybox": BUSYBOX}),
    ])
    srv = ArchiveServer(a.root)
    yield srv
    srv.stop()


def _sets(store: Store, srv: ArchiveServer, key: TestKey) -> tuple[PackageSet, PackageSet]:
    idx = [fetch_suite(store, srv.url, "testing", keyring=key.keyring)]
    return (resolve(store, idx, ["tool"], keyring=key.keyring),
            resolve(store, idx, ["busybox-static"], base=(), keyring=key.keyring))


def test_root_is_merged_usr_and_runs_builds(store: Store, root_server: ArchiveServer, test_key: TestKey,
                                            tmp_path: Path) -> None:
    pkgs, tools = _sets(store, root_server, test_key)
    sp = realise_build_root(store, pkgs, tools, Mirrors({"debian": root_server.url}))
    root = store.real_path(sp)
    assert (root / "bin").readlink() == Path("usr/bin") and (root / "lib").readlink() == Path("usr/lib")
    assert (root / "usr/bin/tool").is_file() and (root / "usr/lib/libtool.txt").is_file()
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert not (root / "usr/bin/busybox").exists()  # the bootstrap tool is not part of the root
    drv = derivation("use-root", "/bin/sh", ["-c", "tool > $out/said; cat /etc/os-release >> $out/said"], root=sp)
    realise(store, [drv])
    assert (store.real_path(drv.out) / "said").read_text() == "tool ran\nID=test\n"
    # the same set in an empty store: the same path and the same NAR
    other = Store.open(tmp_path / "other")
    try:
        pkgs2, tools2 = _sets(other, root_server, test_key)
        sp2 = realise_build_root(other, pkgs2, tools2, Mirrors({"debian": root_server.url}))
        assert sp2 == sp and other.query(sp2).nar_hash == store.query(sp).nar_hash
    finally:
        other.close()


def test_tools_set_without_busybox_is_refused(store: Store, root_server: ArchiveServer, test_key: TestKey) -> None:
    pkgs, _ = _sets(store, root_server, test_key)
    with pytest.raises(PackageError) as err:
        realise_build_root(store, pkgs, pkgs, Mirrors({"debian": root_server.url}))
    assert err.value.code == "bootstrap-invalid"

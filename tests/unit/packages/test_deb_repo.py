"""The local repository store path: built offline in the sandbox from exactly the locked files."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tdxstore.packages.debs import deb_derivations
from tdxstore.packages.index import Mirrors, fetch_suite
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.repo import bootstrap_root, repo_derivation
from tdxstore.packages.resolve import resolve
from tdxstore.store.derivation import Derivation
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store
from tests.debrepo import ArchiveServer, TestKey

pytestmark = pytest.mark.needs_bwrap


def _repo(store: Store, server: ArchiveServer, key: TestKey, mirror: str) -> tuple[Path, Derivation, PackageSet]:
    idx = [fetch_suite(store, server.url, "testing", keyring=key.keyring)]
    pkgs = resolve(store, idx, ["hello"], keyring=key.keyring)
    tools = resolve(store, idx, ["busybox-static"], base=(), keyring=key.keyring)
    mirrors = Mirrors({"debian": mirror})
    bb = deb_derivations(tools, mirrors)["busybox-static"]
    realise(store, [bb], Options())
    root = bootstrap_root(store, bb.out)
    drv = repo_derivation(pkgs, deb_derivations(pkgs, mirrors), root, suite="testing")
    return store.real_path(drv.out), drv, pkgs


def test_repo_holds_exactly_the_locked_files(store: Store, bootstrap_server: ArchiveServer, test_key: TestKey,
                                             tmp_path: Path) -> None:
    out, drv, pkgs = _repo(store, bootstrap_server, test_key, bootstrap_server.url)
    realise(store, [drv], Options(jobs=4))
    packages = (out / "dists/testing/main/binary-amd64/Packages").read_text()
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.deb"))
    assert len(files) == len(pkgs.packages) == 4
    for p in pkgs.packages:
        assert f"SHA256: {p.sha256}" in packages and f"Package: {p.name}\n" in packages
        assert hashlib.sha256((out / f"pool/{p.suite}/{p.file_name}").read_bytes()).hexdigest() == p.sha256
    assert "busybox" not in packages
    release = (out / "dists/testing/Release").read_text()
    assert hashlib.sha256(packages.encode()).hexdigest() in release
    # apt itself reads the repository and resolves hello from it, to the very files of the lock
    apt = tmp_path / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True)
    (apt / "status").touch()
    (apt / "etc/sources.list").write_text(f"deb [trusted=yes] file:{out} testing main\n")
    opts = [f"-oDir::State={apt}", f"-oDir::State::Lists={apt}/lists", f"-oDir::State::status={apt}/status",
            f"-oDir::Cache={apt}/cache", f"-oDir::Etc::SourceList={apt}/etc/sources.list",
            f"-oDir::Etc::SourceParts={apt}/etc", f"-oDir::Etc::Parts={apt}/etc", "-oDir::Cache::pkgcache=",
            "-oDir::Cache::srcpkgcache=", "-oAPT::Architecture=amd64", "-oAcquire::ForceHash=SHA256",
            "-oAPT::Sandbox::User=" + ("root" if os.geteuid() == 0 else "")]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    subprocess.run(["apt-get", *opts, "-qq", "update"], env=env, check=True, capture_output=True)
    uris = subprocess.run(["apt-get", *opts, "-qq", "install", "--print-uris", "hello"], env=env, check=True,
                          capture_output=True, text=True).stdout
    assert {ln.split()[-1].removeprefix("SHA256:") for ln in uris.splitlines()} == {
        p.sha256 for p in pkgs.packages if p.name in ("hello", "libfoo")}


def test_repo_path_is_mirror_independent_and_reproducible(store: Store, bootstrap_server: ArchiveServer,
                                                          test_key: TestKey, tmp_path: Path) -> None:
    _, a, _ = _repo(store, bootstrap_server, test_key, bootstrap_server.url)
    _, b, _ = _repo(store, bootstrap_server, test_key, "http://deb.debian.org/debian")
    assert a.out == b.out
    realise(store, [a], Options(jobs=4))
    first = store.query(a.out).nar_hash
    other = Store.open(tmp_path / "second")
    try:
        _, c, _ = _repo(other, bootstrap_server, test_key, bootstrap_server.url)
        realise(other, [c], Options(jobs=2))
        assert c.out == a.out and other.query(c.out).nar_hash == first
    finally:
        other.close()

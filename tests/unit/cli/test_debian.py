"""The image's Debian package set in tdx.lock: `tdx lock`, `--dry-run`, `--update`, `tdx build --frozen`.

Against a signed bookworm-shaped archive served on 127.0.0.1 (`tests/debrepo.py`, a test keyring):
what mkosi installs (the essential set, the kernel from backports, systemd-boot-efi, the TDXfile's
packages) is locked with apt's resolver; the lock names no mirror, so two mirror URLs give the same
lock and the same image derivation; a stale lock under `--frozen`, a tampered `.deb` and bad lock
entries each fail with one typed error and leave the store valid.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tdxstore.cli import debian
from tdxstore.errors import HashMismatchError, LockfileError, PackageError, TransferError
from tdxstore.image import pipeline
from tdxstore.lock.lockfile import read_lock, write_lock
from tdxstore.store.realise import check_offline, plan, uses_network
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store
from tests.debrepo import (
    Archive,
    ArchiveServer,
    Pkg,
    TestKey,
    bookworm_archive,
    fake_debian_env,
    pinned_stanzas,
    trixie_tools,
)

REPO = Path(__file__).resolve().parents[3]
TDXFILE = 'from tdx import Image\nimage = Image("t", base="debian/bookworm")\n'


@pytest.fixture
def archive(tmp_path: Path, test_key: TestKey) -> Archive:
    return bookworm_archive(tmp_path / "archive", test_key)


@pytest.fixture
def env(tmp_path: Path, server: ArchiveServer, test_key: TestKey, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"TDX_HOME": str(tmp_path / "home"), **fake_debian_env(server, test_key)}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def project(tmp_path: Path, tdxfile: str = TDXFILE) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "TDXfile").write_text(tdxfile)
    return proj


def tdx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def locked_names(proj: Path) -> dict[str, str]:
    doc = tomllib.loads((proj / "tdx.lock").read_text())
    return {p["name"]: p["version"] for p in doc["debian"]["image"]["package"]}


def test_lock_pins_what_mkosi_installs_and_names_no_mirror(tmp_path: Path, env: dict[str, str],
                                                           server: ArchiveServer) -> None:
    proj = project(tmp_path)
    r = tdx(env, "lock", "-p", str(proj))
    assert r.returncode == 0, r.stderr
    names = locked_names(proj)
    # the kernel from backports, the boot packages, and the essential set as mkosi's first apt run
    # resolves it (usrmerge and its perl, which the request alone would not pull in)
    assert {"linux-image-cloud-amd64", "systemd", "udev", "systemd-boot-efi", "usr-is-merged", "ess",
            "base-files", "libfoo", "usrmerge", "perl"} <= set(names)
    assert "hello" not in names and "sec-only" not in names
    assert "+ deb linux-image-cloud-amd64 6.12 (bookworm-backports)" in r.stdout
    text = (proj / "tdx.lock").read_text()
    assert server.url not in text and "127.0.0.1" not in text
    doc = tomllib.loads(text)
    assert doc["debian"]["bootstrap"]["package"][0]["name"] == "busybox-static"
    assert [s["suite"] for s in doc["debian"]["image"]["source"]] == debian.suites("bookworm")
    # mkosi's tools tree, resolved by apt from trixie's verified indexes: virtual names and
    # ?exact-name(...) patterns are apt's to resolve (only the existing one is installed)
    tools = {p["name"]: p for p in doc["debian"]["tools"]["package"]}
    assert doc["debian"]["tools"]["release"] == "trixie"
    assert [s["suite"] for s in doc["debian"]["tools"]["source"]] == ["trixie", "trixie-updates", "trixie-security"]
    assert {"git-core", "systemd-ukify", "distribution-gpg-keys", "ess", "base-files", "libfoo"} <= set(tools)
    assert "kali-archive-keyring" not in tools and tools["jq"]["suite"] == "trixie-updates"
    assert f"+ tools tree: {len(tools)} deb(s)" in r.stdout
    first = (proj / "tdx.lock").read_bytes()
    hits = sum(server.hits.values())
    again = tdx(env, "lock", "-p", str(proj))
    assert again.returncode == 0 and again.stdout == "" and (proj / "tdx.lock").read_bytes() == first
    assert sum(server.hits.values()) == hits  # an up-to-date lock is not re-resolved: no network


def test_dry_run_update_and_frozen(tmp_path: Path, env: dict[str, str], archive: Archive) -> None:
    proj = project(tmp_path)
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    before = (proj / "tdx.lock").read_bytes()
    (proj / "TDXfile").write_text(TDXFILE + 'image.install("hello")\n')
    # --frozen refuses a TDXfile whose packages the lock does not pin, naming the first one
    with closing(Store.open()) as store:
        hook = debian.build_hook(proj / "tdx.lock", store, frozen=True)
        assert hook is not None
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(LockfileError) as err:
            hook(image, image.format)
        assert err.value.code == "lock-stale" and "'hello'" in err.value.message
        assert verify_store(store, check_contents=True).ok
    r = tdx(env, "build", str(proj), "--frozen", "--dry-run")
    assert r.returncode != 0 and "'hello' is requested by the TDXfile but not pinned" in r.stderr
    assert "run `tdx lock`" in r.stderr
    r = tdx(env, "build", str(proj), "--dry-run")  # resolves for the listing, never writes the lock
    assert r.returncode == 0 and "not written (dry run)" in r.stderr, r.stderr
    assert (proj / "tdx.lock").read_bytes() == before
    dry = tdx(env, "lock", "--dry-run", "-p", str(proj))
    assert dry.returncode == 0 and "+ deb hello 2.10-3 (bookworm)" in dry.stdout
    assert (proj / "tdx.lock").read_bytes() == before  # the dry run wrote nothing
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    assert locked_names(proj)["hello"] == "2.10-3"
    # a newer index: `tdx lock` keeps the pins, `tdx lock --update` moves them
    archive.add_suite("bookworm-updates", [Pkg("hello", "2.10-4", depends="libfoo")])
    assert tdx(env, "lock", "-p", str(proj)).stdout == ""
    up = tdx(env, "lock", "--update", "-p", str(proj))
    assert up.returncode == 0 and "~ deb hello: 2.10-3 -> 2.10-4" in up.stdout, up.stderr
    assert locked_names(proj)["hello"] == "2.10-4"


def test_two_mirrors_give_one_lock_and_one_image_derivation(tmp_path: Path, env: dict[str, str],
                                                            archive: Archive, server: ArchiveServer) -> None:
    other = ArchiveServer(archive.root)
    try:
        results = []
        for i, url in enumerate((server.url, other.url)):
            proj = project(tmp_path / f"host{i}")
            host = {**env, "TDX_HOME": str(tmp_path / f"home{i}"), "TDX_DEBIAN_MIRROR": url,
                    "TDX_DEBIAN_SECURITY_MIRROR": url}
            assert tdx(host, "lock", "-p", str(proj)).returncode == 0
            dry = tdx(host, "build", str(proj), "--frozen", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            # the output path: the .drv files differ only in the fetch URLs of fixed-output inputs,
            # which the output hash leaves out (hashed modulo fixed outputs, as Nix does)
            image = [ln for ln in dry.stdout.splitlines() if ln.startswith("image ")]
            results.append(((proj / "tdx.lock").read_bytes(), image))
            emitted = tmp_path / f"mkosi{i}"
            assert tdx(host, "build", str(proj), "--frozen", "--emit-mkosi", str(emitted)).returncode == 0
            conf = "".join(p.read_text() for p in sorted(emitted.rglob("*")) if p.is_file())
            assert "127.0.0.1" not in conf and "Mirror=" not in conf and "mkosi.sources" not in conf
            assert "Packages=linux-image-cloud-amd64\n" in conf or "linux-image-cloud-amd64\n" in conf
        assert results[0] == results[1] and len(results[0][1]) == 1
        assert other.hits  # the second host really downloaded from its own mirror
    finally:
        other.stop()


def test_tampered_deb_fails_with_hash_mismatch_and_store_stays_valid(tmp_path: Path, env: dict[str, str],
                                                                     archive: Archive) -> None:
    proj = project(tmp_path)
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    udev = next(p for p in archive.debs if "/udev_" in p)
    (archive.root / udev).write_bytes((archive.root / udev).read_bytes() + b"tampered")
    with closing(Store.open()) as store:
        hook = debian.build_hook(proj / "tdx.lock", store, frozen=True)
        assert hook is not None
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(HashMismatchError) as err:
            pipeline.evaluate(proj / "TDXfile", None, store, packages=hook)
        assert err.value.code == "hash-mismatch"
        assert verify_store(store, check_contents=True).ok
        locked = debian.read_image_set(read_lock(proj / "tdx.lock"))
        assert locked is not None and image.release == "bookworm"
    r = tdx(env, "build", str(proj), "--frozen")
    assert r.returncode != 0 and sum(ln.startswith("error: ") for ln in r.stderr.splitlines()) == 1
    assert "udev" in r.stderr


@pytest.mark.parametrize(("edit", "code"), [
    (lambda t: {**t, "package": [{**t["package"][0], "sha256": "abc"}, *t["package"][1:]]}, "bad-hash"),
    (lambda t: {**t, "arch": "arm64"}, "wrong-architecture"),
    (lambda t: {**t, "package": [{**t["package"][0], "suite": "sid"}, *t["package"][1:]]}, "suite-not-in-sources"),
])
def test_bad_lock_entries_get_one_typed_error(tmp_path: Path, env: dict[str, str], edit: object,
                                              code: str) -> None:
    proj = project(tmp_path)
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    lock = read_lock(proj / "tdx.lock")
    table = dict(lock.debian["image"])
    assert callable(edit)
    from tdxstore.lock.lockfile import with_debian_set

    write_lock(proj / "tdx.lock", with_debian_set(lock, "image", edit(table)))
    with closing(Store.open()) as store:
        hook = debian.build_hook(proj / "tdx.lock", store, frozen=True)
        assert hook is not None
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(PackageError) as err:
            hook(image, image.format)
        assert err.value.code == code
        assert verify_store(store, check_contents=True).ok
    r = tdx(env, "build", str(proj), "--frozen", "--dry-run")
    assert r.returncode != 0 and sum(ln.startswith("error: ") for ln in r.stderr.splitlines()) == 1


def test_unknown_package_gets_the_closest_names(tmp_path: Path, env: dict[str, str]) -> None:
    proj = project(tmp_path, TDXFILE + 'image.install("helo")\n')
    with closing(Store.open()) as store:
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(PackageError) as err:
            debian.resolve_image_set(store, image, debian.requested(image))
        assert err.value.code == "package-not-found" and "hello" in (err.value.hint or "")
    r = tdx(env, "lock", "-p", str(proj))
    assert r.returncode != 0 and "closest names: hello" in r.stderr and not (proj / "tdx.lock").exists()


def test_lock_without_tools_tree_is_stale_and_tdx_lock_adds_only_it(tmp_path: Path, env: dict[str, str]) -> None:
    # a tdx.lock written before the tools tree was locked: --frozen says so; `tdx lock` adds
    # [debian.tools] and keeps the image's set as it was
    proj = project(tmp_path)
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    full = (proj / "tdx.lock").read_bytes()
    lock = read_lock(proj / "tdx.lock")
    old = dataclasses.replace(lock, debian={k: v for k, v in lock.debian.items() if k != debian.TOOLS_SET})
    write_lock(proj / "tdx.lock", old)
    image_table = tomllib.loads((proj / "tdx.lock").read_text())["debian"]["image"]
    r = tdx(env, "build", str(proj), "--frozen", "--dry-run")
    assert r.returncode != 0 and "pins no packages for mkosi's tools tree" in r.stderr and "tdx lock" in r.stderr
    again = tdx(env, "lock", "-p", str(proj))
    assert again.returncode == 0 and again.stdout.startswith("+ tools tree: "), again.stdout
    assert "+ deb " not in again.stdout
    assert tomllib.loads((proj / "tdx.lock").read_text())["debian"]["image"] == image_table
    assert (proj / "tdx.lock").read_bytes() == full


def test_locked_tools_tree_is_built_offline_and_not_a_download(tmp_path: Path, env: dict[str, str]) -> None:
    # with [debian.tools], the tools tree derivation installs from its repository (an input) with
    # the network cut: `--offline` does not list it; without it, mkosi downloads
    proj = project(tmp_path)
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0
    with closing(Store.open()) as store:
        hook = debian.build_hook(proj / "tdx.lock", store, frozen=True)
        assert hook is not None
        p = pipeline.image_derivation(store, pipeline.evaluate(proj / "TDXfile", None, store, packages=hook))
        assert p.derivation is not None and p.tools_repo is not None
        tools = next(d for d in p.derivation.input_drvs if d.env_dict().get("format") == "tools")
        assert tools.env_dict()["repo"] == p.tools_repo.out.logical and p.tools_repo in tools.input_drvs
        assert not uses_network(tools) and uses_network(pipeline.tools_derivation(store, p.mirrors))
        todo = plan(store, [p.derivation]).build
        assert tools in todo
        # what `--offline` would list: only the pinned mkosi/stub/firmware files, no mkosi run
        with pytest.raises(TransferError) as err:
            check_offline(store, todo)
        assert "builtin:mkosi" not in (err.value.detail or "") and "mkosi_25.3" in (err.value.detail or "")
        conf = store.real_path(store.parse(tools.env_dict()["config"])) / "mkosi.conf"
        text = conf.read_text()
        assert "Include=mkosi-tools" in text and "Mirror" not in text and "ToolsTree" not in text


def test_unavailable_version_gets_the_available_ones(tmp_path: Path, env: dict[str, str]) -> None:
    proj = project(tmp_path, TDXFILE + 'image.install("hello=9.9")\n')
    r = tdx(env, "lock", "-p", str(proj))
    assert r.returncode != 0 and sum(ln.startswith("error: ") for ln in r.stderr.splitlines()) == 1
    assert "version '9.9' of hello is not available" in r.stderr and "2.10-3 (bookworm)" in r.stderr
    assert not (proj / "tdx.lock").exists()
    with closing(Store.open()) as store:
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(PackageError) as err:
            debian.resolve_image_set(store, image, debian.requested(image))
        assert err.value.code == "version-not-available"
        assert verify_store(store, check_contents=True).ok


def _deb_hits(server: ArchiveServer) -> Counter[str]:
    with server.lock:
        return Counter({p: n for p, n in server.hits.items() if p.endswith(".deb")})


def test_changing_one_package_fetches_exactly_one_deb(tmp_path: Path, env: dict[str, str], archive: Archive,
                                                      server: ArchiveServer) -> None:
    proj = project(tmp_path, TDXFILE + 'image.install("hello")\n')
    assert tdx(env, "lock", "-p", str(proj)).returncode == 0

    def fetch_all() -> None:
        with closing(Store.open()) as store:
            hook = debian.build_hook(proj / "tdx.lock", store, frozen=True)
            assert hook is not None
            image = debian.image_of(proj / "TDXfile", [])
            hook(image, image.format)  # fetches every missing .deb of the image and tools sets

    fetch_all()
    first = _deb_hits(server)
    assert len(first) > 10 and all(n == 1 for n in first.values())
    fetch_all()  # nothing changed: nothing is downloaded
    assert _deb_hits(server) == first
    archive.add_suite("bookworm-updates", [Pkg("hello", "2.10-4", depends="libfoo")])
    up = tdx(env, "lock", "--update", "-p", str(proj))
    assert up.returncode == 0 and "~ deb hello: 2.10-3 -> 2.10-4" in up.stdout, up.stderr
    fetch_all()
    new = _deb_hits(server) - first
    assert list(new) == ["/pool/main/h/hello/hello_2.10-4_amd64.deb"] and new.total() == 1


@pytest.mark.parametrize(("listed", "code"), [
    (lambda stanzas: tuple(re.sub(r"SHA256: [0-9a-f]{64}", "SHA256: " + "0" * 64, s) for s in stanzas),
     "pin-mismatch"),
    (lambda stanzas: (), "pin-superseded"),
])
def test_a_pinned_tool_the_archive_disagrees_with_is_one_error(tmp_path: Path, env: dict[str, str],
                                                               archive: Archive, listed: Any, code: str) -> None:
    archive.add_suite("trixie", trixie_tools(), listed=listed(pinned_stanzas()))
    proj = project(tmp_path)
    with closing(Store.open()) as store:
        image = debian.image_of(proj / "TDXfile", [])
        with pytest.raises(PackageError) as err:
            debian.lock_image(store, image, None)
        assert err.value.code == code
        assert verify_store(store, check_contents=True).ok
    r = tdx(env, "lock", "-p", str(proj))
    assert r.returncode != 0 and sum(ln.startswith("error: ") for ln in r.stderr.splitlines()) == 1
    assert not (proj / "tdx.lock").exists()

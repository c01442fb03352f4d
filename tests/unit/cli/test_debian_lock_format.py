"""The image's package sets in tdx.lock: `[debian.image]`, `[debian.tools]` and `[debian.bootstrap]`,
byte for byte (golden file).

Other sets (build roots) are kept when the image's set is rewritten, and modules and fetches sit
beside them unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tdxstore.cli.debian import (
    BOOTSTRAP_SET,
    IMAGE_SET,
    PINNED_SET,
    TOOLS_SET,
    ImageSet,
    describe_changes,
    read_image_set,
    stale_reason,
)
from tdxstore.debian.pins import DEFAULT_PINS
from tdxstore.lock import Lockfile, dump_lock, parse_lock
from tdxstore.lock.lockfile import with_debian_set
from tdxstore.packages.lock import LockedPackage, PackageSet, PackageSource

GOLDEN = Path(__file__).parents[2] / "data" / "lock" / "tdx-debian.lock"
H = "sha256:" + "0" * 64
SOURCES = (PackageSource("bookworm", ("main",), "debian", "20260711T101637Z"),
           PackageSource("bookworm-security", ("main",), "debian-security", "20261130T120000Z"))


def _pkg(name: str, version: str, suite: str = "bookworm", n: int = 1) -> LockedPackage:
    return LockedPackage(name, version, "amd64", suite, f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb",
                         f"{n:x}" * 64, 1000 * n)


def sample() -> ImageSet:
    packages = PackageSet("amd64", SOURCES, (_pkg("systemd", "252.39-1~deb12u2", n=2),
                                             _pkg("base-files", "12.4+deb12u15", n=3),
                                             _pkg("libc6", "2.36-9+deb12u13", "bookworm-security", 4)))
    bootstrap = PackageSet("amd64", SOURCES[:1], (_pkg("busybox-static", "1.35.0-4+b1", n=5),))
    trixie = (PackageSource("trixie", ("main",), "debian", "20261130T120000Z"),)
    tools = PackageSet("amd64", trixie, (_pkg("systemd-ukify", "257.13-1~deb13u1", "trixie", 6),))
    pinned = PackageSet("amd64", trixie, tuple(
        LockedPackage(name, pin.version, "amd64" if name == "systemd-boot-efi" else "all", "trixie",
                      f"{pin.pool}/{pin.file}", pin.sha256, 1000) for name, pin in DEFAULT_PINS.by_package().items()))
    return ImageSet("bookworm", ("systemd",), packages, bootstrap, tools, pinned)


def lock_of(s: ImageSet) -> Lockfile:
    lock = Lockfile(requires_hash=H)
    for name, table in s.tables().items():
        lock = with_debian_set(lock, name, table)
    return lock


def test_golden_file() -> None:
    assert dump_lock(lock_of(sample())) == GOLDEN.read_text()
    assert read_image_set(parse_lock(GOLDEN.read_text())) == sample()


def test_pinned_tools_are_read_from_the_lock() -> None:
    # [debian.pinned] gives the pins `tdx build` uses; without it, the defaults of pins.py
    assert sample().pins() == DEFAULT_PINS
    assert dataclasses.replace(sample(), pinned=None).pins() == DEFAULT_PINS
    s = sample()
    assert s.pinned is not None
    other = LockedPackage("mkosi", "26-1", "all", "trixie", "pool/main/m/mkosi/mkosi_26-1_all.deb", "ab" * 32, 9)
    newer = dataclasses.replace(s, pinned=dataclasses.replace(
        s.pinned, packages=tuple(other if p.name == "mkosi" else p for p in s.pinned.packages)))
    assert newer.pins().mkosi.file == "mkosi_26-1_all.deb" and newer.pins().mkosi.upstream == "26"
    assert describe_changes(s, newer) == ["~ pinned mkosi: 25.3-7 -> 26-1"]
    assert "mkosi, systemd-stub and OVMF" in (stale_reason(dataclasses.replace(s, pinned=None), "bookworm",
                                                           ("systemd",)) or "")


def test_other_sets_survive_a_rewrite() -> None:
    lock = with_debian_set(lock_of(sample()), "build-root-c", {"arch": "amd64", "package": []})
    again = parse_lock(dump_lock(with_debian_set(lock, IMAGE_SET, sample().tables()[IMAGE_SET])))
    assert set(again.debian) == {IMAGE_SET, BOOTSTRAP_SET, TOOLS_SET, PINNED_SET, "build-root-c"}


def test_staleness_and_changes() -> None:
    s = sample()
    assert stale_reason(s, "bookworm", ("systemd",)) is None
    assert "'curl' is requested by the TDXfile but not pinned" in (stale_reason(s, "bookworm", ("curl", "systemd"))
                                                                     or "")
    assert "no longer requested" in (stale_reason(s, "bookworm", ()) or "")
    assert "trixie" in (stale_reason(s, "trixie", ("systemd",)) or "")
    assert stale_reason(None, "bookworm", ()) is not None
    # a lock from before the tools tree was locked is stale (`tdx lock` adds [debian.tools])
    assert "mkosi's tools tree" in (stale_reason(dataclasses.replace(s, tools=None), "bookworm", ("systemd",)) or "")
    added = describe_changes(dataclasses.replace(s, tools=None), s)
    assert added == ["+ tools tree: 1 deb(s) (0 MB, trixie)"]
    newer = dataclasses.replace(s, tools=dataclasses.replace(s.tools, packages=(  # type: ignore[arg-type]
        _pkg("systemd-ukify", "257.14-1", "trixie", 7),)))
    assert describe_changes(s, newer) == ["~ tools deb systemd-ukify: 257.13-1~deb13u1 -> 257.14-1"]
    newer = ImageSet(s.release, s.requested, PackageSet("amd64", SOURCES, (
        _pkg("systemd", "252.40-1~deb12u1", n=6), _pkg("base-files", "12.4+deb12u15", n=3),
        _pkg("curl", "7.88", n=7))), s.bootstrap)
    assert describe_changes(s, newer) == ["+ deb curl 7.88 (bookworm)", "- deb libc6 2.36-9+deb12u13",
                                          "~ deb systemd: 252.39-1~deb12u2 -> 252.40-1~deb12u1"]


def test_tools_set_of_another_request_is_not_read() -> None:
    # mkosi's tools request changed (another mkosi): the old [debian.tools] does not pin it
    lock = lock_of(sample())
    table = {**lock.debian[TOOLS_SET], "requested": ["systemd"]}
    assert (got := read_image_set(with_debian_set(lock, TOOLS_SET, table))) is not None and got.tools is None

"""The image's package set in tdx.lock: `[debian.image]` and `[debian.bootstrap]`, byte for byte (golden file).

Other sets (build roots) are kept when the image's set is rewritten, and modules and fetches sit
beside them unchanged.
"""

from __future__ import annotations

from pathlib import Path

from tdxstore.cli.debian import BOOTSTRAP_SET, IMAGE_SET, ImageSet, describe_changes, read_image_set, stale_reason
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
    tools = PackageSet("amd64", SOURCES[:1], (_pkg("busybox-static", "1.35.0-4+b1", n=5),))
    return ImageSet("bookworm", ("systemd",), packages, tools)


def lock_of(s: ImageSet) -> Lockfile:
    lock = Lockfile(requires_hash=H)
    for name, table in s.tables().items():
        lock = with_debian_set(lock, name, table)
    return lock


def test_golden_file() -> None:
    assert dump_lock(lock_of(sample())) == GOLDEN.read_text()
    assert read_image_set(parse_lock(GOLDEN.read_text())) == sample()


def test_other_sets_survive_a_rewrite() -> None:
    lock = with_debian_set(lock_of(sample()), "build-root-c", {"arch": "amd64", "package": []})
    again = parse_lock(dump_lock(with_debian_set(lock, IMAGE_SET, sample().tables()[IMAGE_SET])))
    assert set(again.debian) == {IMAGE_SET, BOOTSTRAP_SET, "build-root-c"}


def test_staleness_and_changes() -> None:
    s = sample()
    assert stale_reason(s, "bookworm", ("systemd",)) is None
    assert "'curl' is requested by the TDXfile but not pinned" in (stale_reason(s, "bookworm", ("curl", "systemd"))
                                                                     or "")
    assert "no longer requested" in (stale_reason(s, "bookworm", ()) or "")
    assert "trixie" in (stale_reason(s, "trixie", ("systemd",)) or "")
    assert stale_reason(None, "bookworm", ()) is not None
    newer = ImageSet(s.release, s.requested, PackageSet("amd64", SOURCES, (
        _pkg("systemd", "252.40-1~deb12u1", n=6), _pkg("base-files", "12.4+deb12u15", n=3),
        _pkg("curl", "7.88", n=7))), s.bootstrap)
    assert describe_changes(s, newer) == ["+ deb curl 7.88 (bookworm)", "- deb libc6 2.36-9+deb12u13",
                                          "~ deb systemd: 252.39-1~deb12u2 -> 252.40-1~deb12u1"]

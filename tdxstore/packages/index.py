"""Verified package indexes of one suite: InRelease checked by gpgv, Packages checked by its hash (L3).

Trust chain: keyring -> InRelease signature -> the Release `SHA256:` table -> `Packages.xz`. The
InRelease is fetched on every call (it is the archive's "now"); each `Packages.xz` is a fixed-output
fetch keyed by the hash the verified Release gives, so it is downloaded once per store. Mirror URLs
only say where to download from; they never enter a store path.
"""

from __future__ import annotations

import gzip
import lzma
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tdxstore.errors import PackageError
from tdxstore.fetch.download import download
from tdxstore.packages.lock import PackageSource
from tdxstore.packages.release import DEBIAN_KEYRING, Release, check_fresh, parse_release, verify_inrelease
from tdxstore.store.builtins import fetchurl_derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

ARCHIVES = ("debian", "debian-security")


@dataclass(frozen=True, slots=True)
class Mirrors:
    """Where each logical archive is downloaded from (a host setting, never part of a lock or path)."""

    urls: Mapping[str, str] = field(default_factory=dict)
    snapshot: str | None = None  # e.g. https://snapshot.debian.org, for files the live pool dropped

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", {k: v.rstrip("/") for k, v in dict(self.urls).items()})
        for url in [*self.urls.values(), self.snapshot or "http://x"]:
            if not re.match(r"^(https?|file)://\S+$", url):
                raise PackageError(f"not a mirror URL: {url!r}", hint="use http://, https:// or file:// URLs",
                                   code="bad-mirror")

    def url(self, archive: str) -> str:
        if archive not in self.urls:
            raise PackageError(f"no mirror is configured for the archive {archive!r}",
                               hint=f"configure one (archives known: {', '.join(sorted(self.urls)) or 'none'})",
                               code="no-mirror")
        return self.urls[archive]


def archive_of(suite: str) -> str:
    """The logical archive that publishes `suite` (security updates come from their own archive)."""
    return "debian-security" if suite.endswith("-security") else "debian"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stanza of a Packages file, reduced to what locking needs."""

    name: str
    version: str
    arch: str
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SuiteIndex:
    """A suite whose InRelease and Packages files were verified; files are store paths."""

    source: PackageSource
    arch: str
    release: Release
    inrelease: StorePath
    packages: tuple[tuple[str, StorePath, str], ...]  # (component, store path, index path in Release)

    @property
    def suite(self) -> str:
        return self.source.suite


def _index_path(release: Release, component: str, arch: str, where: str) -> tuple[str, str, int]:
    for suffix in (".xz", ".gz"):
        f = release.file(f"{component}/binary-{arch}/Packages{suffix}")
        if f is not None:
            return f.path, f.sha256, f.size
    raise PackageError(f"{where} lists no Packages index for {component}/{arch}",
                       hint=f"check the component and architecture (the suite has: {', '.join(release.components)}"
                            f"; {', '.join(release.architectures)})", code="index-missing")


def fetch_suite(store: Store, mirror: str, suite: str, *, components: tuple[str, ...] = ("main",),
                arch: str = "amd64", archive: str | None = None, keyring: Path = DEBIAN_KEYRING,
                now: datetime | None = None) -> SuiteIndex:
    """Fetch and verify `suite` from `mirror` (the archive root URL); the result's files are in `store`."""
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    with store.temp_dir("inrelease") as tmp:
        staged = tmp / "InRelease"
        download(f"{base}/InRelease", staged, expected_sha256=None)
        text = verify_inrelease(staged, keyring, where=f"{base}/InRelease")
        release = parse_release(text, f"{base}/InRelease")
        if suite not in (release.suite, release.codename):
            raise PackageError(f"{base}/InRelease is the Release of {release.codename or release.suite}, not {suite}",
                               hint="the mirror serves another suite under this name", code="release-wrong-suite")
        check_fresh(release, f"{base}/InRelease", now)
        inrelease = store.add_flat(staged, name=f"{suite}_InRelease")
    drvs = []
    for comp in components:
        path, sha, _ = _index_path(release, comp, arch, f"{base}/InRelease")
        drvs.append((comp, path, fetchurl_derivation(f"{base}/{path}", sha, f"{suite}_{path.replace('/', '_')}")))
    missing = [d for _, _, d in drvs if not store.is_valid(d.out)]
    if missing:
        realise(store, missing, Options(jobs=len(missing)))
    source = PackageSource(suite, components, archive or archive_of(suite), release.timestamp)
    return SuiteIndex(source, arch, release, inrelease, tuple((c, d.out, p) for c, p, d in drvs))


def _decompress(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xfd7zXZ"):
        data = lzma.decompress(data)
    elif data.startswith(b"\x1f\x8b"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


_FIELD = re.compile(r"^(Package|Version|Architecture|Filename|Size|SHA256): (.*)$", re.M)


def entries(store: Store, index: SuiteIndex) -> Iterator[IndexEntry]:
    """Every package stanza of the suite's verified Packages files."""
    for _, sp, _ in index.packages:
        for stanza in _decompress(store.real_path(sp)).split("\n\n"):
            f = dict(_FIELD.findall(stanza))
            if "Package" in f and "SHA256" in f and "Filename" in f:
                yield IndexEntry(f["Package"], f.get("Version", ""), f.get("Architecture", ""), f["Filename"],
                                 int(f.get("Size", "0") or 0), f["SHA256"].lower())

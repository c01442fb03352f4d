"""The locked package set: what `tdx.lock` records about Debian packages, and its TOML form (L3).

A locked package is (name, version, architecture, suite, pool path, SHA-256, size); a source is
(suite, components, archive, timestamp). No mirror URL is part of either: the archive is a logical
name ("debian", "debian-security") that a `Mirrors` setting maps to a URL when fetching, so two
hosts with different mirrors lock the same set. Values validate on construction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tdxstore.errors import PackageError

_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"([0-9]+:)?[0-9A-Za-z.+~-]+")
_SUITE = re.compile(r"[a-z0-9][a-z0-9.-]*")
_ARCHIVE = re.compile(r"[a-z0-9][a-z0-9-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_POOL = re.compile(r"pool/[A-Za-z0-9+._~%/-]+\.deb")


def _bad(what: str, hint: str, code: str = "lock-entry-invalid") -> PackageError:
    return PackageError(what, hint=hint, code=code)


@dataclass(frozen=True, slots=True)
class PackageSource:
    """One suite the set was resolved from, and the `Date:` of its verified Release."""

    suite: str
    components: tuple[str, ...]
    archive: str
    timestamp: str  # snapshot.debian.org form: 20260711T101637Z

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        if not _SUITE.fullmatch(self.suite):
            raise _bad(f"suite {self.suite!r} is not a Debian suite name", "write e.g. 'bookworm'")
        if not self.components or not all(_SUITE.fullmatch(c) for c in self.components):
            raise _bad(f"components {self.components!r} of suite {self.suite} are invalid", "write e.g. ['main']")
        if not _ARCHIVE.fullmatch(self.archive):
            raise _bad(f"archive {self.archive!r} of suite {self.suite} is not an archive name",
                       "write 'debian' or 'debian-security'")
        if not _TIMESTAMP.fullmatch(self.timestamp):
            raise _bad(f"timestamp {self.timestamp!r} of suite {self.suite} is malformed",
                       "write it as YYYYMMDDTHHMMSSZ (the Date: of the suite's Release)")


@dataclass(frozen=True, slots=True)
class LockedPackage:
    """One `.deb`, pinned by the SHA-256 that the verified index gave for it."""

    name: str
    version: str
    arch: str
    suite: str
    path: str  # pool path below the archive root, e.g. pool/main/h/hello/hello_2.10-3_amd64.deb
    sha256: str
    size: int

    def __post_init__(self) -> None:
        who = f"package {self.name} {self.version}"
        if not _NAME.fullmatch(self.name):
            raise _bad(f"{self.name!r} is not a Debian package name", "names are lowercase, e.g. 'libc6'")
        if not _VERSION.fullmatch(self.version):
            raise _bad(f"{who}: version {self.version!r} is malformed", "copy the version from the index")
        if not _HEX64.fullmatch(self.sha256):
            raise _bad(f"{who}: sha256 {self.sha256!r} is not 64 lowercase hex digits",
                       "re-run `tdx lock` rather than editing hashes by hand", code="bad-hash")
        if not _POOL.fullmatch(self.path) or ".." in self.path.split("/"):
            raise _bad(f"{who}: path {self.path!r} is not a pool path", "write e.g. 'pool/main/h/hello/…deb'")
        if not isinstance(self.size, int) or self.size <= 0:
            raise _bad(f"{who}: size {self.size!r} is not a positive integer", "copy the size from the index")

    @property
    def file_name(self) -> str:
        """The pool file's base name (`hello_2.10-3_amd64.deb`; no epoch), used as the store name."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class PackageSet:
    """A resolved, locked set for one architecture: the sources and every package, sorted by name."""

    arch: str
    sources: tuple[PackageSource, ...]
    packages: tuple[LockedPackage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "packages", tuple(sorted(self.packages, key=lambda p: (p.name, p.arch))))
        suites = [s.suite for s in self.sources]
        if len(set(suites)) != len(suites):
            raise _bad(f"suite listed twice in the package sources: {suites}", "list each suite once")
        seen: set[tuple[str, str]] = set()
        for p in self.packages:
            if p.arch not in (self.arch, "all"):
                raise _bad(f"package {p.name} {p.version} is for {p.arch}, but the lock is for {self.arch}",
                           f"re-run `tdx lock` for {self.arch}", code="wrong-architecture")
            if p.suite not in suites:
                raise _bad(f"package {p.name} comes from suite {p.suite!r}, which is not in the lock's sources "
                           f"({', '.join(suites) or 'none'})", "add the suite to the sources and re-lock",
                           code="suite-not-in-sources")
            if (p.name, p.arch) in seen:
                raise _bad(f"package {p.name}:{p.arch} is locked twice", "keep one entry per package")
            seen.add((p.name, p.arch))

    def source(self, suite: str) -> PackageSource:
        for s in self.sources:
            if s.suite == suite:
                return s
        raise _bad(f"suite {suite!r} is not in the lock's sources ({', '.join(s.suite for s in self.sources)})",
                   "add it to the sources and re-lock", code="suite-not-in-sources")

    def get(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def key(self) -> str:
        """A hash of exactly the locked files (name, version, arch, SHA-256): the set's identity."""
        lines = "".join(f"{p.name} {p.version} {p.arch} {p.sha256}\n" for p in self.packages)
        return hashlib.sha256(f"{self.arch}\n{lines}".encode()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.packages)


def diff(old: PackageSet, new: PackageSet) -> tuple[list[str], list[str], list[tuple[str, str, str]]]:
    """(added names, removed names, [(name, old version, new version)]) between two sets."""
    a = {p.name: p.version for p in old.packages}
    b = {p.name: p.version for p in new.packages}
    changed = [(n, a[n], b[n]) for n in sorted(a.keys() & b.keys()) if a[n] != b[n]]
    return sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys()), changed


# -- TOML form ------------------------------------------------------------------------------------
# tdx.lock sections: `[debian] arch = "amd64"`, `[[debian.source]]`, `[[debian.package]]`.

_SOURCE_KEYS = ("suite", "components", "archive", "timestamp")
_PACKAGE_KEYS = ("name", "version", "arch", "suite", "path", "sha256", "size")


def to_toml_dict(pkgs: PackageSet) -> dict[str, Any]:
    """The `[debian]` table of tdx.lock as plain data (keys in a fixed order, packages sorted)."""
    return {
        "arch": pkgs.arch,
        "source": [{"suite": s.suite, "components": list(s.components), "archive": s.archive,
                    "timestamp": s.timestamp} for s in pkgs.sources],
        "package": [{k: getattr(p, k) for k in _PACKAGE_KEYS} for p in pkgs.packages],
    }


def _table(entry: object, keys: Sequence[str], where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise _bad(f"{where} is not a table", "re-run `tdx lock`")
    missing = [k for k in keys if k not in entry]
    unknown = sorted(set(entry) - set(keys))
    if missing or unknown:
        raise _bad(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}", "re-run `tdx lock`")
    return entry


def from_toml_dict(data: Mapping[str, Any], *, arch: str | None = None) -> PackageSet:
    """Read the `[debian]` table back; `arch` (the build's) refuses a lock made for another one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("arch"), str):
        raise _bad("the [debian] table of the lock has no arch", "re-run `tdx lock`")
    if arch is not None and data["arch"] != arch:
        raise _bad(f"the lock's packages are for {data['arch']}, but this build is for {arch}",
                   f"re-run `tdx lock` on/for {arch}", code="wrong-architecture")
    sources = []
    for i, raw in enumerate(_list(data.get("source"), "source")):
        s = _table(raw, _SOURCE_KEYS, f"[[debian.source]] #{i + 1}")
        sources.append(PackageSource(s["suite"], tuple(_list(s["components"], "components")), s["archive"],
                                     s["timestamp"]))
    packages = []
    for i, raw in enumerate(_list(data.get("package"), "package")):
        p = _table(raw, _PACKAGE_KEYS, f"[[debian.package]] #{i + 1}")
        packages.append(LockedPackage(**{k: p[k] for k in _PACKAGE_KEYS}))
    return PackageSet(data["arch"], tuple(sources), tuple(packages))


def _list(value: object, what: str) -> Iterable[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{what} in the [debian] table of the lock is not a list", "re-run `tdx lock`")
    return value

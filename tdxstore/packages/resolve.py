"""Resolve requested packages to a locked set with apt's own resolver, from verified indexes only (L3).

apt runs with a private configuration and an empty dpkg status; its only sources are local `file:`
copies of indexes that `index.fetch_suite` verified, signed-by the same keyring (not `Trusted`), so
apt checks signatures and hashes again itself. Requests are checked against the indexes first so a
missing package, version or suite gets one clear error. No resolver logic lives here.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import PackageError
from tdxstore.packages.index import IndexEntry, Mirrors, SuiteIndex, archive_of, entries, fetch_suite
from tdxstore.packages.lock import LockedPackage, PackageSet
from tdxstore.packages.release import DEBIAN_KEYRING
from tdxstore.sandbox import process
from tdxstore.store.store import Store

#: What mkosi 25.3 installs besides the requested packages (FINDINGS.md: same closure as mkosi's).
BASE_SET = ("?essential", "base-files")
_REQUEST = re.compile(r"(?P<name>[a-z0-9][a-z0-9+.-]+)(?::(?P<arch>[a-z0-9]+))?"
                      r"(?:=(?P<version>[^/\s]+)|/(?P<suite>[a-z0-9.-]+))?")
_URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Request:
    """`name`, `name=version` or `name/suite` (apt's own spellings), optionally `name:arch`."""

    name: str
    version: str | None = None
    suite: str | None = None
    arch: str | None = None

    @classmethod
    def parse(cls, text: str) -> Request:
        m = _REQUEST.fullmatch(text.strip())
        if m is None:
            raise PackageError(f"{text!r} is not a package request", code="bad-package-request",
                               hint="write 'name', 'name=version' or 'name/suite'")
        return cls(m["name"], m["version"], m["suite"], m["arch"])

    def apt(self) -> str:
        arch = f":{self.arch}" if self.arch else ""
        tail = f"={self.version}" if self.version else (f"/{self.suite}" if self.suite else "")
        return f"{self.name}{arch}{tail}"


def _check(requests: Sequence[Request], indexes: Sequence[SuiteIndex],
           table: dict[str, list[tuple[str, IndexEntry]]]) -> None:
    suites = [i.suite for i in indexes]
    for r in requests:
        if r.suite is not None and r.suite not in suites:
            raise PackageError(f"{r.apt()}: suite {r.suite!r} is not in the package sources ({', '.join(suites)})",
                               hint=f"add {r.suite} to the sources, or drop '/{r.suite}'",
                               code="suite-not-in-sources")
        found = [(s, e) for s, e in table.get(r.name, []) if r.suite in (None, s)]
        if not found:
            close = difflib.get_close_matches(r.name, table.keys(), n=5, cutoff=0.75)
            where = r.suite or ", ".join(suites)
            raise PackageError(f"package {r.name!r} does not exist in {where}",
                               hint=f"closest names: {', '.join(close)}" if close else "check the spelling "
                                    "(`apt-cache search` on a Debian host)", code="package-not-found")
        if r.version is not None and r.version not in {e.version for _, e in found}:
            have = sorted({f"{e.version} ({s})" for s, e in found})
            raise PackageError(f"version {r.version!r} of {r.name} is not available in {', '.join(suites)}",
                               hint=f"available: {', '.join(have)}", code="version-not-available")


def _apt_root(store: Store, root: Path, indexes: Sequence[SuiteIndex], keyring: Path) -> list[str]:
    """Lay out local archives holding only the verified files; return the apt -o options."""
    lines = []
    for idx in indexes:
        archive = root / "archives" / idx.source.archive
        dists = archive / "dists" / idx.suite
        dists.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.real_path(idx.inrelease), dists / "InRelease")
        for _, sp, path in idx.packages:
            (dists / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(store.real_path(sp), dists / path)
        comps = " ".join(c for c, _, _ in idx.packages)
        lines.append(f"deb [signed-by={keyring} arch={idx.arch}] file:{archive} {idx.suite} {comps}\n")
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/apt.conf.d",
                "etc/preferences.d", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state/status").touch()
    (root / "etc/sources.list").write_text("".join(lines))
    arch = indexes[0].arch
    opts: dict[str, str | Path] = {
        "Dir::State": root / "state", "Dir::State::status": root / "state/status", "Dir::Cache": root / "cache",
        "Dir::Etc::SourceList": root / "etc/sources.list", "Dir::Etc::SourceParts": root / "etc/sources.list.d",
        "Dir::Etc::Parts": root / "etc/apt.conf.d", "Dir::Etc::Preferences": root / "etc/preferences",
        "Dir::Etc::PreferencesParts": root / "etc/preferences.d", "Dir::Log": root / "log",
        "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": "",  # a stale cache silently adds packages
        "APT::Architecture": arch, "APT::Architectures": arch, "Acquire::Languages": "none",
        "Acquire::By-Hash": "no", "Acquire::ForceHash": "SHA256", "APT::Install-Recommends": "false",
        "pkgCacheGen::ForceEssential": ",", "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
    }
    argv: list[str] = []
    for key, value in opts.items():
        argv += ["-o", f"{key}={os.fspath(value)}"]
    return argv


def _apt(argv: list[str], what: str) -> str:
    env = process.host_env({"LC_ALL": "C"}, allow=("PATH", "TMPDIR"))
    result = process.run(argv, env=env, what=what, timeout=600, check=False)
    out = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:  # apt explains a conflict on stdout and states it on stderr
        raise PackageError(f"{what} could not resolve the request (exit status {result.returncode})",
                           hint="read apt's message below",
                           detail=f"command: {process.command_line(argv)}\n{process.tail(out)}\n"
                                  f"{process.tail(result.stderr)}", code="resolution-failed")
    return out


def resolve(store: Store, indexes: Sequence[SuiteIndex], packages: Sequence[str], *,
            base: Sequence[str] = BASE_SET, keyring: Path = DEBIAN_KEYRING) -> PackageSet:
    """The locked closure of `base` + `packages` over `indexes` (in order of preference for equal files)."""
    if not indexes:
        raise PackageError("no package sources to resolve from", hint="fetch at least one suite",
                           code="no-sources")
    arch = indexes[0].arch
    if any(i.arch != arch for i in indexes):
        raise PackageError("the package sources are for different architectures", code="wrong-architecture",
                           hint="fetch every suite for the same architecture")
    requests = [Request.parse(p) for p in packages]
    table: dict[str, list[tuple[str, IndexEntry]]] = {}
    by_hash: dict[str, list[tuple[SuiteIndex, IndexEntry]]] = {}
    with store.temp_dir("apt-resolve") as root, ThreadPoolExecutor(max_workers=1) as pool:
        opts = _apt_root(store, root, indexes, keyring)
        # apt reads and re-verifies the indexes while this process parses them (both take seconds)
        update = pool.submit(_apt, ["apt-get", *opts, "-qq", "update"], "apt-get update (verified local indexes)")
        try:
            for idx in indexes:
                for e in entries(store, idx):
                    table.setdefault(e.name, []).append((idx.suite, e))
                    by_hash.setdefault(e.sha256, []).append((idx, e))
            _check(requests, indexes, table)
        finally:
            update.result()
        out = _apt(["apt-get", *opts, "-q", "install", "--print-uris", *base, *(r.apt() for r in requests)],
                   "apt-get install --print-uris")
    locked = []
    for line in out.splitlines():
        m = _URI_LINE.match(line.strip())
        if m is None:
            continue
        path = urllib.parse.unquote(m["uri"].split("/pool/", 1)[-1])
        archive = m["uri"].split("/archives/", 1)[-1].split("/", 1)[0]
        cands = [(i, e) for i, e in by_hash.get(m["sha"], []) if i.source.archive == archive
                 and e.filename == f"pool/{path}"]
        if not cands:
            raise PackageError(f"apt chose {m['file']}, which no verified index lists", code="resolution-failed",
                               hint="this is a bug in tdx; please report it")
        idx, e = cands[0]
        locked.append(LockedPackage(e.name, e.version, e.arch, idx.suite, e.filename, e.sha256, e.size))
    if not locked:
        raise PackageError("apt resolved no packages", detail=out, code="resolution-failed",
                           hint="check the requested packages")
    return PackageSet(arch, tuple(i.source for i in indexes), tuple(locked))


def lock_packages(store: Store, mirrors: Mirrors, suites: Sequence[str], packages: Sequence[str], *,
                  components: tuple[str, ...] = ("main",), arch: str = "amd64", base: Sequence[str] = BASE_SET,
                  keyring: Path = DEBIAN_KEYRING) -> PackageSet:
    """Verify `suites` (each from the mirror of its archive) and resolve `packages` over them: `tdx lock`."""
    indexes = [fetch_suite(store, mirrors.url(archive_of(s)), s, components=components, arch=arch,
                           keyring=keyring) for s in suites]
    return resolve(store, indexes, packages, base=base, keyring=keyring)

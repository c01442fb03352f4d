"""Locked `.deb` files as fixed-output store paths, fetched in parallel (L3).

Each file is a `builtin:fetchurl` derivation keyed by (SHA-256, file name): the mirror URL is only
where it is fetched from, never part of the path. A file whose bytes differ from the lock is refused
by the store with `hash-mismatch`; a file the pool no longer has (superseded versions) gets an error
naming the package and the two ways out: a snapshot archive, or a store import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from tdxstore.errors import FetchError, PackageError
from tdxstore.packages.index import Mirrors
from tdxstore.packages.lock import LockedPackage, PackageSet
from tdxstore.store.builtins import default_name, fetchurl_derivation
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

#: The setting that points tdx at a snapshot archive (e.g. https://snapshot.debian.org).
SNAPSHOT_ENV = "TDX_DEBIAN_SNAPSHOT"
#: Called with (done, total) as .deb files become valid.
DebProgress = Callable[[int, int], None]


def deb_url(pkg: LockedPackage, pkgs: PackageSet, mirrors: Mirrors) -> str:
    """Where to download `pkg`: the archive's mirror, or the snapshot of the lock's timestamp."""
    source = pkgs.source(pkg.suite)
    if mirrors.snapshot:
        return f"{mirrors.snapshot.rstrip('/')}/archive/{source.archive}/{source.timestamp}/{pkg.path}"
    return f"{mirrors.url(source.archive)}/{pkg.path}"


def deb_store_name(pkg: LockedPackage) -> str:
    return default_name(pkg.file_name, fallback=f"{pkg.name}.deb")


def deb_derivation(pkg: LockedPackage, pkgs: PackageSet, mirrors: Mirrors) -> Derivation:
    """The fixed-output derivation of one locked file; its output path depends on hash and name only."""
    return fetchurl_derivation(deb_url(pkg, pkgs, mirrors), pkg.sha256, deb_store_name(pkg))


def deb_derivations(pkgs: PackageSet, mirrors: Mirrors) -> dict[str, Derivation]:
    """{package name: derivation} for every file of the set."""
    return {p.name: deb_derivation(p, pkgs, mirrors) for p in pkgs.packages}


def _gone(pkg: LockedPackage, pkgs: PackageSet, url: str, err: FetchError) -> PackageError:
    source = pkgs.source(pkg.suite)
    when = datetime.strptime(source.timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return PackageError(
        f"{pkg.name} {pkg.version} ({pkg.suite}, locked {when:%Y-%m-%d}) is no longer in the archive's pool: "
        f"{url} was not found",
        hint=(f"Debian drops superseded versions. Either set {SNAPSHOT_ENV}=https://snapshot.debian.org "
              f"(needs access to it) to fetch the same file by the same hash from the archive as of "
              f"{source.timestamp}, or import a store export holding it "
              f"(`tdx store add --flat {pkg.file_name} --name {deb_store_name(pkg)}` on a copy of the file; "
              "its SHA-256 must match the lock), or re-lock with `tdx lock --update`."),
        detail=err.message, code="package-superseded")


def realise_debs(store: Store, pkgs: PackageSet, mirrors: Mirrors, *, jobs: int = 4,
                 progress: DebProgress | None = None) -> dict[str, StorePath]:
    """Make every locked file valid (downloading only the missing ones, `jobs` at a time)."""
    drvs = deb_derivations(pkgs, mirrors)
    missing = [d for d in drvs.values() if not store.is_valid(d.out)]
    total, done = len(drvs), len(drvs) - len(missing)
    failed: list[Derivation] = []

    def notify(event: str, drv: Derivation, _detail: str) -> None:
        nonlocal done
        if event == "built" and progress is not None:
            done += 1
            progress(done, total)
        elif event == "failed":
            failed.append(drv)

    if progress is not None:
        progress(done, total)
    if missing:
        try:
            realise(store, missing, Options(jobs=jobs), progress=notify)
        except FetchError as e:
            if e.code == "http-error" and ("HTTP 404" in e.message or "HTTP 410" in e.message):
                by_drv = {d.drv_path: name for name, d in drvs.items()}
                for drv in failed:
                    pkg = pkgs.get(by_drv[drv.drv_path])
                    if pkg is not None and dict(drv.env).get("url", "") in e.message:
                        raise _gone(pkg, pkgs, dict(drv.env)["url"], e) from e
            raise
    return {name: d.out for name, d in drvs.items()}


def locked_paths(pkgs: PackageSet, mirrors: Mirrors) -> Mapping[str, StorePath]:
    """The store paths the set's files will have (no I/O)."""
    return {name: d.out for name, d in deb_derivations(pkgs, mirrors).items()}

"""Build roots and Debian toolchains of builds, locked in tdx.lock's `[build-root]` section (L4).

A request is a sorted list of apt requests (`build-essential`, `golang-1.22-go/bookworm-backports`)
and, for a toolchain, the directory kept (`prefix`). Each resolves over the fixed `BUILD_ROOT_SUITES`
to a `PackageSet`, written in the `[debian]` table format of `lock.py` (one `[[build-root.set]]` per
request, plus the busybox set that unpacks them). No mirror URL is recorded; realising a set is
keyed by its files only, so one root is shared by every build asking for the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tdxstore.errors import PackageError
from tdxstore.packages.index import Mirrors, SuiteIndex, archive_of, fetch_suite
from tdxstore.packages.lock import PackageSet, from_toml_dict, to_toml_dict
from tdxstore.packages.repo import BOOTSTRAP_PACKAGE
from tdxstore.packages.resolve import BASE_SET, resolve
from tdxstore.packages.root import realise_build_root
from tdxstore.packages.toolchain import realise_toolchain
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: The tdx.lock section this module owns.
SECTION = "build-root"
#: The suites every build root resolves over (backports for Go 1.21-1.23, security for rustc-web).
BUILD_ROOT_SUITES = ("bookworm", "bookworm-backports", "bookworm-security")


@dataclass(frozen=True, slots=True)
class RootRequest:
    """What a build asks for: a whole root (`prefix` None, over Debian's base set) or one toolchain directory."""

    packages: tuple[str, ...]
    prefix: str | None = None
    name: str = "debian-build-root"

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(sorted(set(self.packages))))
        if not self.packages:
            raise PackageError(f"build root {self.name!r} requests no packages", code="lock-entry-invalid",
                               hint="name at least one package")

    def describe(self) -> str:
        what = f"toolchain {self.name} ({self.prefix})" if self.prefix else "build root"
        return f"{what} of [{', '.join(self.packages)}]"


@dataclass(frozen=True, slots=True)
class LockedRoot:
    request: RootRequest
    pkgs: PackageSet


@dataclass(frozen=True, slots=True)
class BuildRootLock:
    """The `[build-root]` section: the tools set (busybox) and one locked set per request."""

    tools: PackageSet | None = None
    roots: tuple[LockedRoot, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(sorted(self.roots, key=lambda r: _order(r.request))))
        keys = [r.request for r in self.roots]
        if len(set(keys)) != len(keys):
            raise PackageError("a build root is locked twice in [build-root]", code="lock-entry-invalid",
                               hint="re-run `tdx lock`")

    def get(self, request: RootRequest) -> PackageSet | None:
        return next((r.pkgs for r in self.roots if r.request == request), None)


def _order(r: RootRequest) -> tuple[str, ...]:
    return (r.prefix or "", r.name, *r.packages)


def to_section(lock: BuildRootLock) -> dict[str, Any]:
    """The `[build-root]` table as plain data (sets in a fixed order)."""
    out: dict[str, Any] = {}
    if lock.tools is not None:
        out["tools"] = to_toml_dict(lock.tools)
    sets = []
    for r in lock.roots:
        entry: dict[str, Any] = {"request": list(r.request.packages), "name": r.request.name}
        if r.request.prefix is not None:
            entry["prefix"] = r.request.prefix
        sets.append({**entry, **to_toml_dict(r.pkgs)})
    if sets:
        out["set"] = sets
    return out


def from_section(data: object, *, arch: str | None = None) -> BuildRootLock:
    """Read the `[build-root]` table back (a missing section is an empty lock)."""
    if data is None:
        return BuildRootLock()
    if not isinstance(data, Mapping):
        raise PackageError(f"[{SECTION}] of tdx.lock is not a table", code="lock-entry-invalid",
                           hint="re-run `tdx lock`")
    tools = from_toml_dict(data["tools"], arch=arch) if "tools" in data else None
    roots = []
    for i, raw in enumerate(_sets(data.get("set"))):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("request"), list):
            raise PackageError(f"[[{SECTION}.set]] #{i + 1} has no request list", code="lock-entry-invalid",
                               hint="re-run `tdx lock`")
        request = RootRequest(tuple(raw["request"]), raw.get("prefix"), raw.get("name", "debian-build-root"))
        rest = {k: v for k, v in raw.items() if k not in ("request", "prefix", "name")}
        roots.append(LockedRoot(request, from_toml_dict(rest, arch=arch)))
    return BuildRootLock(tools, tuple(roots))


def _sets(value: object) -> Iterable[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PackageError(f"[{SECTION}] set is not an array of tables", code="lock-entry-invalid",
                           hint="re-run `tdx lock`")
    return value


def lock_roots(store: Store, mirrors: Mirrors, requests: Sequence[RootRequest], old: BuildRootLock | None = None,
               *, arch: str = "amd64") -> BuildRootLock:
    """Exactly `requests` locked: old entries kept as they are, new ones resolved over BUILD_ROOT_SUITES."""
    old = old or BuildRootLock()
    wanted = sorted(set(requests), key=_order)
    missing = [r for r in wanted if old.get(r) is None]
    tools = old.tools
    indexes = _indexes(store, mirrors, arch) if missing or (tools is None and wanted) else []
    if tools is None and wanted:
        tools = resolve(store, indexes[:1], [BOOTSTRAP_PACKAGE], base=())
    roots = []
    for r in wanted:
        pkgs = old.get(r)
        if pkgs is None:
            pkgs = resolve(store, indexes, list(r.packages), base=() if r.prefix else BASE_SET)
        roots.append(LockedRoot(r, pkgs))
    return BuildRootLock(tools, tuple(roots))


def _indexes(store: Store, mirrors: Mirrors, arch: str) -> list[SuiteIndex]:
    return [fetch_suite(store, mirrors.url(archive_of(s)), s, arch=arch) for s in BUILD_ROOT_SUITES]


def realise_root(store: Store, lock: BuildRootLock, request: RootRequest, mirrors: Mirrors, *,
                 jobs: int = 4) -> StorePath:
    """The store path of a locked request (fetching and unpacking what is missing)."""
    pkgs = lock.get(request)
    if pkgs is None or lock.tools is None:
        raise PackageError(f"the {request.describe()} is not in tdx.lock's [{SECTION}]", code="lock-stale",
                           hint="run `tdx lock` (a --frozen build uses only what tdx.lock pins)")
    if request.prefix is None:
        return realise_build_root(store, pkgs, lock.tools, mirrors, jobs=jobs)
    return realise_toolchain(store, pkgs, lock.tools, mirrors, prefix=request.prefix, name=request.name, jobs=jobs)

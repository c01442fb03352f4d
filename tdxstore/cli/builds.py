"""Typed builds lowered to derivations for `tdx build`, `tdx lock` and `tdx realise` (L5): builders meet packages.

A build declares its root (`root_packages`) and maybe a Debian toolchain (`compiler=DebianToolchain`);
here both are locked in tdx.lock's `[build-root]` section (with `frozen`, only read from it), realised,
and handed to the builder's `derivation_on`. Nothing is printed; library errors pass through. A project
without tdx.lock resolves its roots each time and records nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdxstore.errors import LockfileError

if TYPE_CHECKING:
    from tdxstore.lock.lockfile import Lockfile
    from tdxstore.packages.buildroot import BuildRootLock, RootRequest
    from tdxstore.packages.index import Mirrors
    from tdxstore.store.derivation import Derivation
    from tdxstore.store.path import StorePath
    from tdxstore.store.store import Store


def declared_mirrors() -> Mirrors:
    """The build's Debian mirrors (`$TDX_DEBIAN_MIRROR`, …) as the package layer's archive table."""
    from tdxstore.debian.mirror import declared_mirrors as apt_mirrors
    from tdxstore.packages.index import Mirrors

    m = apt_mirrors()
    return Mirrors({"debian": m.debian, **({"debian-security": m.security} if m.security else {})})


def requests_of(build: Any) -> list[RootRequest]:
    """The build roots and Debian toolchains `build` needs (nothing for a plain Derivation)."""
    from tdxstore.builders.toolchain import DebianToolchain
    from tdxstore.packages.buildroot import RootRequest

    if not hasattr(build, "derivation_on"):
        return []
    out = [RootRequest(tuple(build.root_packages))]
    tc = getattr(build, "compiler", None)
    if isinstance(tc, DebianToolchain):
        out.append(RootRequest(tc.packages, tc.prefix, tc.name))
    return out


class Lowering:
    """`lower(build) -> Derivation` for the image pipeline and `tdx realise`; keeps tdx.lock's section current."""

    def __init__(self, store: Store, directory: Path, *, frozen: bool = False, mirrors: Mirrors | None = None):
        from tdxstore.lock.lockfile import LOCK_NAME, read_lock
        from tdxstore.packages.buildroot import SECTION, from_section

        self.store, self.directory, self.frozen = store, directory, frozen
        self.mirrors = mirrors or declared_mirrors()
        self.lock_path: Path | None = directory / LOCK_NAME
        if self.lock_path.is_file():
            self.lock: BuildRootLock = from_section(read_lock(self.lock_path).extra.get(SECTION))
        else:
            self.lock, self.lock_path = from_section(None), None

    def __call__(self, build: object) -> Derivation:
        from tdxstore.builders.toolchain import DebianToolchain

        b: Any = build
        tc = getattr(b, "compiler", None)
        if isinstance(tc, DebianToolchain):
            b = dataclasses.replace(b, compiler=self.realise(requests_of(b)[1]))
        root = self.realise(requests_of(b)[0])
        drv: Derivation = b.derivation_on(self.store, root, base=self.directory)
        return drv

    def realise(self, request: RootRequest) -> StorePath:
        """The store path of `request`, locking it first unless `frozen` (which refuses an unlocked one)."""
        from tdxstore.packages.buildroot import SECTION, lock_roots, realise_root

        if self.lock.get(request) is None or self.lock.tools is None:
            if self.frozen:
                raise LockfileError(f"--frozen: the {request.describe()} is not pinned in tdx.lock's [{SECTION}]",
                                    hint="run `tdx lock` and commit tdx.lock", code="lock-stale")
            self.lock = lock_roots(self.store, self.mirrors, [*(r.request for r in self.lock.roots), request],
                                   self.lock)
            self._save()
        return realise_root(self.store, self.lock, request, self.mirrors)

    def _save(self) -> None:
        from tdxstore.lock.lockfile import read_lock, write_lock

        if self.lock_path is not None:
            write_lock(self.lock_path, with_section(read_lock(self.lock_path), self.lock))


def with_section(lock: Lockfile, roots: BuildRootLock) -> Lockfile:
    """`lock` with its `[build-root]` section replaced by `roots` (dropped when empty)."""
    from tdxstore.packages.buildroot import SECTION, to_section

    extra = {k: v for k, v in lock.extra.items() if k != SECTION}
    table = to_section(roots)
    if table:
        extra[SECTION] = table
    return dataclasses.replace(lock, extra=extra)


def lock_build_roots(store: Store, builds: Iterable[object], new: Lockfile) -> Lockfile:
    """`tdx lock`: exactly the roots and toolchains `builds` need, old pins kept, new ones resolved."""
    from tdxstore.packages.buildroot import SECTION, from_section, lock_roots

    requests = [r for b in builds for r in requests_of(b)]
    old = from_section(new.extra.get(SECTION))
    roots = lock_roots(store, declared_mirrors(), requests, old) if requests else from_section(None)
    return with_section(new, roots)


def section_changes(old: Lockfile | None, new: Lockfile) -> list[str]:
    """Readable changes of the `[build-root]` section: `+`/`-` per request, `~` when its files changed."""
    from tdxstore.packages.buildroot import SECTION, from_section

    before = {r.request: r.pkgs.key for r in from_section(old.extra.get(SECTION) if old else None).roots}
    after = {r.request: r.pkgs.key for r in from_section(new.extra.get(SECTION)).roots}
    out = []
    for req in sorted(before.keys() | after.keys(), key=lambda r: (r.prefix or "", r.name, *r.packages)):
        sign = "+" if req not in before else "-" if req not in after else "~" if before[req] != after[req] else ""
        if sign:
            out.append(f"{sign} {req.describe()}")
    return out

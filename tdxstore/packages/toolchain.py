"""Toolchains made from pinned Debian packages (L4): a locked set unpacked, one directory kept, as a store path.

`toolchain_derivation` unpacks every `.deb` of a locked set (sorted by name) with busybox's
`dpkg-deb -x` in the bootstrap root, offline, and copies the directory `prefix` (e.g.
`/usr/lib/go-1.22`, Debian's GOROOT) to `$out` with its symlinks resolved, so the result is a
self-contained toolchain (`$out/bin/go`) usable as a builder's `compiler=`. No maintainer script runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from tdxstore.errors import PackageError
from tdxstore.packages.index import Mirrors
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.repo import realise_unpacked
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: Debian's Go toolchains: the package that holds it and the GOROOT it installs.
DEBIAN_GO = {"1.21": ("golang-1.21-go", "/usr/lib/go-1.21"), "1.22": ("golang-1.22-go", "/usr/lib/go-1.22"),
             "1.23": ("golang-1.23-go", "/usr/lib/go-1.23")}

_SCRIPT = r"""
set -eu
mkdir /build/x
for deb in $DEBS; do dpkg-deb -x "$deb" /build/x; done
if [ ! -d "/build/x$PREFIX" ]; then echo "tdx: no $PREFIX in the unpacked packages" >&2; exit 66; fi
cp -RL "/build/x$PREFIX/." "$out/"
chmod -R u+w "$out"
"""


def toolchain_derivation(pkgs: PackageSet, debs: Mapping[str, Derivation], bootstrap: StorePath, *,
                         prefix: str, name: str) -> Derivation:
    """`prefix` of the unpacked set `pkgs` (`debs`: package name -> its `.deb` derivation) as `$out`."""
    if not prefix.startswith("/") or ".." in prefix.split("/"):
        raise PackageError(f"toolchain prefix {prefix!r} is not an absolute path", code="toolchain-invalid",
                           hint="name the directory the packages install, e.g. /usr/lib/go-1.22")
    ordered = [debs[p.name] for p in pkgs.packages]
    return derivation(name, "/bin/sh", ["-c", _SCRIPT], root=bootstrap, inputs=ordered,
                      env={"DEBS": " ".join(d.out.logical for d in ordered), "PREFIX": prefix}, timeout=3600)


def realise_toolchain(store: Store, pkgs: PackageSet, tools: PackageSet, mirrors: Mirrors, *, prefix: str,
                      name: str, jobs: int = 4) -> StorePath:
    """Fetch what is missing, then build (or find) the toolchain; `tools` locks busybox-static."""
    return realise_unpacked(
        store, pkgs, tools, mirrors,
        lambda debs, root: toolchain_derivation(pkgs, debs, root, prefix=prefix, name=name), jobs=jobs)

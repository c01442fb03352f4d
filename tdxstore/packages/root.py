"""Build roots: a Debian root file system made from a locked package set, as one store path (L3).

The derivation unpacks every locked `.deb` (sorted by name) with busybox's `dpkg-deb -x` in the
bootstrap root, offline, into a merged-/usr tree (`/bin`, `/sbin`, `/lib`, `/lib64` link into
`/usr`, as debootstrap lays it out before unpacking). No maintainer script runs; the few things a
compiler root needs from them are done explicitly (`/etc/passwd` and `/etc/group` from base-passwd,
the `cc`/`c++` links, the sandbox's mount points, network ones included so that a
fixed-output step such as `go mod download` can use the same root). Its path is keyed by the set's files only.
"""

from __future__ import annotations

from collections.abc import Mapping

from tdxstore.packages.index import Mirrors
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.repo import realise_unpacked
from tdxstore.sandbox import NETWORK_MOUNT_POINTS, ROOT_MOUNT_POINTS
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: Packages a build root always has on top of Debian's essential set (what `build_deps` extend).
BUILD_ESSENTIAL = ("build-essential",)

_ROOT_SCRIPT = r"""
set -eu
cd "$out"
for d in bin sbin lib lib64; do mkdir -p "usr/$d"; ln -s "usr/$d" "$d"; done
for deb in $DEBS; do dpkg-deb -x "$deb" .; done
# base-passwd's postinst copies its templates; nothing else of /etc/{passwd,group} is needed to build
for f in passwd group; do
  [ -e "etc/$f" ] || cp "usr/share/base-passwd/$f.master" "etc/$f" 2>/dev/null || : > "etc/$f"
done
# update-alternatives would make these from gcc's and g++'s postinst
[ -e usr/bin/cc ] || [ ! -e usr/bin/gcc ] || ln -s gcc usr/bin/cc
[ -e usr/bin/c++ ] || [ ! -e usr/bin/g++ ] || ln -s g++ usr/bin/c++
for m in $MOUNT_POINTS; do
  case "$m" in */) mkdir -p "$m" ;; *) mkdir -p "$(dirname "$m")"; [ -e "$m" ] || : > "$m" ;; esac
done
# unpacking leaves directories without write permission for the owner in some packages
chmod -R u+w .
"""


def build_root_derivation(pkgs: PackageSet, debs: Mapping[str, Derivation], bootstrap: StorePath,
                          *, name: str = "debian-build-root") -> Derivation:
    """The root file system of `pkgs` (`debs`: package name -> its fixed-output `.deb` derivation).

    Two requests for the same locked files give the same derivation, hence one shared store path;
    use it as `root=` of sandboxed derivations.
    """
    ordered = [debs[p.name] for p in pkgs.packages]  # PackageSet keeps packages sorted by name
    return derivation(name, "/bin/sh", ["-c", _ROOT_SCRIPT], root=bootstrap, inputs=ordered,
                      env={"DEBS": " ".join(d.out.logical for d in ordered),
                           "MOUNT_POINTS": " ".join(ROOT_MOUNT_POINTS + NETWORK_MOUNT_POINTS)}, timeout=3600)


def realise_build_root(store: Store, pkgs: PackageSet, tools: PackageSet, mirrors: Mirrors, *,
                       jobs: int = 4) -> StorePath:
    """Fetch what is missing, then build (or find) the root of `pkgs`; `tools` locks busybox-static."""
    return realise_unpacked(store, pkgs, tools, mirrors, lambda debs, root: build_root_derivation(pkgs, debs, root),
                            jobs=jobs)

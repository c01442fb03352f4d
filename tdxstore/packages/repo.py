"""A local apt repository as a store path, made in the sandbox from exactly the locked files (L3).

The builder runs in a tiny bootstrap root (Debian's static busybox, itself a locked `.deb`) with no
network. It copies each locked `.deb` into `pool/` and generates `Packages` from the files it copied
(control fields, size, SHA-256), then a `Release` with a fixed date, all in sorted order, so the
output depends only on the set's files. Nothing in it comes from the network or from a mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tdxstore._fs import atomic_write, temporary_directory
from tdxstore.errors import PackageError, TdxError
from tdxstore.packages.debs import deb_derivations, realise_debs
from tdxstore.packages.index import Mirrors
from tdxstore.packages.lock import PackageSet
from tdxstore.sandbox import add_mount_points, process
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

BOOTSTRAP_PACKAGE = "busybox-static"
_SHELL = "/bin/sh"

_REPO_SCRIPT = r"""
set -eu
cd "$out"
index="dists/$SUITE/main/binary-$ARCH"
mkdir -p "$index"
printf '%s\n' "$DEBS" | while read -r src pool; do
  [ -n "$src" ] || continue
  mkdir -p "$(dirname "$pool")"
  cp "$src" "$pool"
  chmod 0644 "$pool"
  dpkg-deb -f "$pool" | grep -v '^$'
  printf 'Filename: %s\nSize: %s\nSHA256: %s\n\n' "$pool" "$(stat -c %s "$pool")" \
    "$(sha256sum "$pool" | cut -d' ' -f1)"
done > "$index/Packages"
{
  printf 'Origin: tdx\nLabel: tdx locked packages\nSuite: %s\nCodename: %s\n' "$SUITE" "$SUITE"
  printf 'Date: Thu, 01 Jan 1970 00:00:00 UTC\nArchitectures: %s\nComponents: main\n' "$ARCH"
  printf 'Description: exactly the files of locked package set %s\nSHA256:\n' "$SET_KEY"
  printf ' %s %s main/binary-%s/Packages\n' "$(sha256sum "$index/Packages" | cut -d' ' -f1)" \
    "$(stat -c %s "$index/Packages")" "$ARCH"
} > "dists/$SUITE/Release"
"""


def bootstrap_root(store: Store, busybox_deb: StorePath) -> StorePath:
    """A root file system holding only the static busybox of `busybox_deb` and its applet links.

    Content-addressed (NAR hash), so it is the same path wherever the same locked file is unpacked.
    Remembered per `.deb` (unpacking and hashing it was most of a no-op build, for image repositories,
    build roots and toolchains alike): the note only names the root the same `.deb` gave before, and
    is used while that path is valid.
    """
    note = store.home / "cache" / "bootstrap-root" / busybox_deb.base_name
    try:
        known: StorePath | None = store.parse(note.read_text().strip())
    except (OSError, TdxError):
        known = None
    if known is not None and store.is_valid(known):
        return known
    root = _unpack_bootstrap_root(store, busybox_deb)
    note.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(note, root.logical.encode())
    return root


def _unpack_bootstrap_root(store: Store, busybox_deb: StorePath) -> StorePath:
    deb = store.real_path(busybox_deb)
    with temporary_directory(Path(store.tmp), "bootstrap-") as tmp:
        x = tmp / "x"
        process.run(["dpkg-deb", "-x", deb, x], what=f"dpkg-deb -x {busybox_deb.name}")
        busybox = x / "bin" / "busybox"
        if not busybox.is_file():
            raise PackageError(f"{busybox_deb.name} holds no bin/busybox", code="bootstrap-invalid",
                               hint=f"lock {BOOTSTRAP_PACKAGE} for the bootstrap root")
        root = tmp / "root"
        (root / "bin").mkdir(parents=True)
        busybox.rename(root / "bin" / "busybox")
        applets = process.run([root / "bin" / "busybox", "--list"], env={"PATH": "/nonexistent"},
                              what="busybox --list").stdout.decode().split()
        for applet in sorted(set(applets) - {"busybox"}):
            if "/" not in applet:
                (root / "bin" / applet).symlink_to("busybox")
        for alias in ("sbin", "usr/bin", "usr/sbin"):
            (root / alias).parent.mkdir(parents=True, exist_ok=True)
            (root / alias).symlink_to("/bin")
        add_mount_points(root, network=False)
        return store.add_path(root, "busybox-bootstrap-root")


def repo_derivation(pkgs: PackageSet, debs: Mapping[str, Derivation], root: StorePath, *,
                    suite: str = "bookworm") -> Derivation:
    """The repository of exactly `pkgs` (`debs`: package name -> its fixed-output derivation).

    `suite` is the name apt (and mkosi's `LocalMirror=`, which uses the image's release) looks for.
    """
    pools: dict[str, str] = {}
    lines = []
    for p in pkgs.packages:
        pool = f"pool/{p.suite}/{p.file_name}"
        if pool in pools:
            raise PackageError(f"{p.name} and {pools[pool]} share the file name {p.file_name}",
                               code="repo-conflict", hint="lock only one of them")
        pools[pool] = p.name
        lines.append(f"{debs[p.name].out.logical} {pool}")
    return derivation(f"debian-repo-{suite}", _SHELL, ["-c", _REPO_SCRIPT], root=root,
                      inputs=[debs[p.name] for p in pkgs.packages],
                      env={"DEBS": "\n".join(sorted(lines, key=lambda s: s.split()[1])), "SUITE": suite,
                           "ARCH": pkgs.arch, "SET_KEY": pkgs.key})



def realise_unpacked(store: Store, pkgs: PackageSet, tools: PackageSet, mirrors: Mirrors,
                     make: Callable[[Mapping[str, Derivation], StorePath], Derivation], *, jobs: int = 4) -> StorePath:
    """Fetch what is missing of `pkgs`, then build (or find) `make(debs, bootstrap root)`.

    `tools` locks busybox-static, the only tool the unpacking derivations run; a build root and a
    toolchain are both made this way from a locked set.
    """
    if tools.get(BOOTSTRAP_PACKAGE) is None:
        raise PackageError(f"the tools set does not lock {BOOTSTRAP_PACKAGE}", code="bootstrap-invalid",
                           hint=f"resolve [{BOOTSTRAP_PACKAGE!r}] with base=() for the tools set")
    bb = deb_derivations(tools, mirrors)[BOOTSTRAP_PACKAGE]
    realise(store, [bb], Options())
    debs = deb_derivations(pkgs, mirrors)
    realise_debs(store, pkgs, mirrors, jobs=jobs)
    drv = make(debs, bootstrap_root(store, bb.out))
    realise(store, [drv], Options(jobs=jobs))
    return drv.out

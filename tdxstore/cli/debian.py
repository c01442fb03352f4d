"""The image's Debian package set in `tdx.lock` (L5): lock it, check it, make its repository.

Composes `tdxstore.packages` (verified indexes, apt's resolver, `.deb` store paths, the local
repository) with the lockfile and the evaluated `Image`. The set lives in `[debian.image]`, with
the busybox that builds its repository in `[debian.bootstrap]`; other sets (build roots) sit next
to them. Nothing here resolves a dependency (apt does) and no mirror URL is ever written to the lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdxstore.errors import LockfileError

if TYPE_CHECKING:
    from tdxstore.image.model.image import Image
    from tdxstore.lock.lockfile import Lockfile
    from tdxstore.mkosi.config import ImageFormat
    from tdxstore.packages.index import Mirrors
    from tdxstore.packages.lock import PackageSet
    from tdxstore.store.derivation import Derivation
    from tdxstore.store.store import Store

IMAGE_SET = "image"
BOOTSTRAP_SET = "bootstrap"
#: A keyring other than debian-archive-keyring (a private archive; the tests' signed archive).
KEYRING_ENV = "TDX_DEBIAN_KEYRING"
ARCH = "amd64"  # mkosi's Architecture=x86-64
JOBS = 4  # parallel .deb downloads


@dataclass(frozen=True, slots=True)
class ImageSet:
    """What `[debian.image]` records: the request it was resolved from, and the locked closure."""

    release: str
    requested: tuple[str, ...]
    packages: PackageSet
    bootstrap: PackageSet  # busybox-static: the only tool the repository derivation runs

    def tables(self) -> dict[str, dict[str, Any]]:
        from tdxstore.packages.lock import to_toml_dict

        return {IMAGE_SET: {"release": self.release, "requested": list(self.requested),
                            **to_toml_dict(self.packages)},
                BOOTSTRAP_SET: {"requested": ["busybox-static"], **to_toml_dict(self.bootstrap)}}


def mirrors(env: Mapping[str, str] | None = None) -> Mirrors:
    """Where the archives are downloaded from: the declared mirror (never part of the lock)."""
    from tdxstore.debian.mirror import DEFAULT_SECURITY_MIRROR, declared_mirrors
    from tdxstore.packages.debs import SNAPSHOT_ENV
    from tdxstore.packages.index import Mirrors

    env = os.environ if env is None else env
    declared = declared_mirrors(env)
    security = declared.security or DEFAULT_SECURITY_MIRROR  # security updates are rarely mirrored
    return Mirrors({"debian": declared.debian, "debian-security": security}, snapshot=env.get(SNAPSHOT_ENV) or None)


def keyring(env: Mapping[str, str] | None = None) -> Path:
    from tdxstore.packages.release import DEBIAN_KEYRING

    value = (os.environ if env is None else env).get(KEYRING_ENV)
    return Path(value) if value else DEBIAN_KEYRING


def suites(release: str) -> list[str]:
    """The suites an image of `release` installs from, in apt's order of preference for equal files."""
    return [release, f"{release}-updates", f"{release}-security", f"{release}-backports"]


def requested(image: Image, fmt: ImageFormat | None = None) -> tuple[str, ...]:
    """The packages mkosi is asked for (the TDXfile's, the kernel, systemd-boot-efi, ...), sorted.

    Without `fmt`, for the image's own format: what the lock pins. Another format (`tdx build -f tar`
    of a uki image) asks for a subset, installed from the same repository.
    """
    from tdxstore.image.render import image_packages

    return tuple(image_packages(image, fmt or image.format))


def resolve_image_set(store: Store, image: Image, wanted: Sequence[str], where: Mirrors | None = None,
                      trust: Path | None = None) -> ImageSet:
    """Verify the release's indexes and let apt resolve exactly what mkosi installs.

    mkosi 25.3 installs `?essential base-files` in one apt run, then the requested packages in a
    second one, so the closure is the union of both resolutions (the first keeps e.g. usrmerge, which
    the second alone would not choose); the repository then holds one version of each name.
    """
    from tdxstore.packages.index import archive_of, fetch_suite
    from tdxstore.packages.lock import PackageSet
    from tdxstore.packages.resolve import resolve

    where = where or mirrors()
    trust = trust or keyring()
    wanted = tuple(sorted(set(wanted)))
    indexes = [fetch_suite(store, where.url(archive_of(s)), s, arch=ARCH, keyring=trust)
               for s in suites(image.release)]
    essential = resolve(store, indexes, [], keyring=trust)
    full = resolve(store, indexes, wanted, keyring=trust)
    union = {p.name: p for p in essential.packages} | {p.name: p for p in full.packages}
    bootstrap = resolve(store, indexes, ["busybox-static"], base=(), keyring=trust)
    return ImageSet(image.release, wanted, PackageSet(full.arch, full.sources, tuple(union.values())), bootstrap)


def read_image_set(lock: Lockfile) -> ImageSet | None:
    """The image's set as `tdx.lock` records it (validated), or None when it has none."""
    from tdxstore.packages.lock import from_toml_dict

    table, tools = lock.debian.get(IMAGE_SET), lock.debian.get(BOOTSTRAP_SET)
    if table is None or tools is None:
        return None
    release, wanted = table.get("release"), table.get("requested")
    if not isinstance(release, str) or not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
        raise LockfileError("[debian.image] of tdx.lock has no release or requested list",
                            hint="re-run `tdx lock --update`", code="lock-malformed")
    return ImageSet(release, tuple(wanted), from_toml_dict(table, arch=ARCH), from_toml_dict(tools, arch=ARCH))


def stale_reason(locked: ImageSet | None, release: str, wanted: Sequence[str]) -> str | None:
    """Why the lock does not pin this request (the first unpinned package first), or None if it does."""
    if locked is None:
        return "tdx.lock pins no Debian packages for the image"
    if locked.release != release:
        return f"tdx.lock pins packages of {locked.release}, the TDXfile's image is {release}"
    names = {p.name for p in locked.packages.packages}
    new = [w for w in wanted if w not in locked.requested]
    if new:
        from tdxstore.image.render import bare_name

        unpinned = [w for w in new if bare_name(w) not in names]
        first = unpinned[0] if unpinned else new[0]
        state = "not pinned" if unpinned else "not locked as requested"
        return f"package {first!r} is requested by the TDXfile but {state}"
    gone = [r for r in locked.requested if r not in wanted]
    return f"package {gone[0]!r} is locked but no longer requested" if gone else None


def stale_error(reason: str, lock_path: Path) -> LockfileError:
    return LockfileError(f"--frozen: {reason} ({lock_path})", hint="run `tdx lock` and commit tdx.lock",
                         code="lock-stale")


def describe_changes(old: ImageSet | None, new: ImageSet) -> list[str]:
    """`tdx lock` lines for the set: `+ deb name version`, `- deb name version`, `~ deb name: a -> b`."""
    from tdxstore.packages.lock import diff

    if old is None:
        return [f"+ deb {p.name} {p.version} ({p.suite})" for p in new.packages.packages]
    added, removed, changed = diff(old.packages, new.packages)
    out = [f"+ deb {n} {p.version} ({p.suite})" for n in added if (p := new.packages.get(n)) is not None]
    out += [f"- deb {n} {p.version}" for n in removed if (p := old.packages.get(n)) is not None]
    out += [f"~ deb {n}: {a} -> {b}" for n, a, b in changed]
    return out


def lock_image(store: Store, image: Image, old: Lockfile | None, *,
               update: bool = False) -> tuple[ImageSet | None, ImageSet]:
    """(old set, new set): the old one kept when it still pins the request and no update is asked."""
    before = read_image_set(old) if old is not None else None
    if not update and before is not None and stale_reason(before, image.release, requested(image)) is None:
        return before, before
    return before, resolve_image_set(store, image, requested(image))


def repo_derivation(store: Store, locked: ImageSet, where: Mirrors | None = None, *, fetch: bool = True,
                    progress: Callable[[int, int], None] | None = None) -> Derivation:
    """The repository of the locked set as a derivation; with `fetch`, every `.deb` is made valid first.

    The bootstrap busybox is always fetched (the bootstrap root is content-addressed: its path is
    known only once it is unpacked).
    """
    from tdxstore.packages import repo
    from tdxstore.packages.debs import deb_derivations, realise_debs
    from tdxstore.store.realise import Options, realise

    where = where or mirrors()
    bb = deb_derivations(locked.bootstrap, where)[repo.BOOTSTRAP_PACKAGE]
    if not store.is_valid(bb.out):
        realise(store, [bb], Options())
    if fetch:
        realise_debs(store, locked.packages, where, jobs=JOBS, progress=progress)
    debs = deb_derivations(locked.packages, where)
    return repo.repo_derivation(locked.packages, debs, repo.bootstrap_root(store, bb.out), suite=locked.release)


def image_of(tdxfile: Path, paths: Sequence[Path]) -> Image:
    from tdxstore.image.tdxfile import load_tdxfile

    return load_tdxfile(tdxfile, paths)


def lock_into(new: Lockfile, old: Lockfile | None, tdxfile: Path, paths: Sequence[Path], store: Store, *,
              update: bool) -> Lockfile:
    """`new` with the image's package set: kept from `old` while it pins the request, else resolved."""
    from tdxstore.lock.lockfile import with_debian_set

    image = image_of(tdxfile, paths)
    _, after = lock_image(store, image, old, update=update)
    for name, table in after.tables().items():
        new = with_debian_set(new, name, table)
    return new


def lock_changes(old: Lockfile | None, new: Lockfile) -> list[str]:
    """The package lines of `tdx lock` / `tdx lock --dry-run` (empty when the set is unchanged)."""
    after = read_image_set(new)
    if after is None:
        return []
    before = read_image_set(old) if old is not None else None
    return describe_changes(before, after)


def build_hook(lock_path: Path, store: Store, *, frozen: bool, fetch: bool = True,
               say: Callable[[str], None] = lambda _m: None) -> Callable[[Image, ImageFormat], Derivation] | None:
    """The `packages` hook of `tdx build` for a project with a tdx.lock (None without one: no pins).

    The hook checks that the lock pins what the image requests (with `frozen`, a mismatch is one
    error naming the first unpinned package; otherwise the set is re-resolved and the lock rewritten),
    then fetches the missing `.deb` files and returns the repository derivation. Without `fetch`
    (`--dry-run`, `--emit-mkosi`) no `.deb` of the set is fetched and the lock is never written.
    """
    if not lock_path.exists():
        return None

    def hook(image: Image, fmt: ImageFormat) -> Derivation:
        from tdxstore.lock.lockfile import read_lock, with_debian_set, write_lock

        lock = read_lock(lock_path)
        locked = read_image_set(lock)
        wanted = requested(image, fmt)
        reason = stale_reason(locked, image.release, requested(image))
        if reason is None and locked is not None:
            extra = [w for w in wanted if w not in locked.requested]
            reason = f"package {extra[0]!r} of the {fmt.value} format is not pinned" if extra else None
        if reason is not None:
            if frozen:
                raise stale_error(reason, lock_path)
            say(f"locking the image's Debian packages: {reason}")
            locked = resolve_image_set(store, image, (*requested(image), *wanted))
            for name, table in locked.tables().items():
                lock = with_debian_set(lock, name, table)
            if fetch:
                write_lock(lock_path, lock)
                say(f"wrote {lock_path}: {len(locked.packages.packages)} Debian package(s)")
            else:
                say(f"{len(locked.packages.packages)} Debian package(s) resolved; {lock_path} not written "
                    "(dry run)")
        assert locked is not None
        progress = _progress(say, locked.packages.total_size) if fetch else None
        return repo_derivation(store, locked, fetch=fetch, progress=progress)

    return hook


def _progress(say: Callable[[str], None], size: int) -> Callable[[int, int], None]:
    shown = {"last": -1}

    def report(done: int, total: int) -> None:
        step = done * 10 // max(total, 1)
        if done == total or step != shown["last"]:
            shown["last"] = step
            say(f"  .deb files: {done}/{total} in the store ({size / 1e6:.0f} MB locked)")

    return report

"""The image's Debian package set in `tdx.lock` (L5): lock it, check it, make its repository.

Composes `tdxstore.packages` (verified indexes, apt's resolver, `.deb` store paths, the local
repository) with the lockfile and the evaluated `Image`. The set lives in `[debian.image]`, mkosi's
tools tree's in `[debian.tools]`, the busybox that builds their repositories in `[debian.bootstrap]`;
other sets (build roots) sit next to them. Nothing here resolves a dependency (apt does) and no
mirror URL is ever written to the lock.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tdxstore.errors import LockfileError, PackageError

if TYPE_CHECKING:
    from tdxstore.debian.pins import Pins
    from tdxstore.image.model.image import Image
    from tdxstore.image.pipeline import LockedRepos
    from tdxstore.lock.lockfile import Lockfile
    from tdxstore.mkosi.config import ImageFormat
    from tdxstore.packages.index import Mirrors, SuiteIndex
    from tdxstore.packages.lock import PackageSet
    from tdxstore.store.store import Store

IMAGE_SET = "image"
BOOTSTRAP_SET = "bootstrap"
TOOLS_SET = "tools"
PINNED_SET = "pinned"
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
    tools: PackageSet | None = None  # mkosi's tools tree (None: a lock written before it was locked)
    pinned: PackageSet | None = None  # mkosi, systemd-boot-efi (the stub) and ovmf, as pins.py seeds them

    def pins(self) -> Pins:
        """The pinned tools this lock builds with (the defaults of `tdxstore.debian.pins` without one)."""
        from tdxstore.debian.pins import DEFAULT_PINS, PinnedDeb, Pins

        if self.pinned is None:
            return DEFAULT_PINS
        debs = {p.name: PinnedDeb(p.path.rsplit("/", 1)[0], p.file_name, p.sha256) for p in self.pinned.packages}
        return Pins(debs["mkosi"], debs["systemd-boot-efi"], debs["ovmf"])

    def tables(self) -> dict[str, dict[str, Any]]:
        from tdxstore.mkosi.config import TOOLS_PACKAGES, TOOLS_RELEASE
        from tdxstore.packages.lock import to_toml_dict

        out = {IMAGE_SET: {"release": self.release, "requested": list(self.requested),
                           **to_toml_dict(self.packages)},
               BOOTSTRAP_SET: {"requested": ["busybox-static"], **to_toml_dict(self.bootstrap)}}
        if self.tools is not None:
            out[TOOLS_SET] = {"release": TOOLS_RELEASE, "requested": list(TOOLS_PACKAGES),
                              **to_toml_dict(self.tools)}
        if self.pinned is not None:
            out[PINNED_SET] = to_toml_dict(self.pinned)
        return out


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


def tools_suites() -> list[str]:
    """The suites mkosi's tools tree installs from (as mkosi's default tools tree: no backports)."""
    from tdxstore.mkosi.config import TOOLS_RELEASE

    return suites(TOOLS_RELEASE)[:3]


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
    from tdxstore.packages.resolve import resolve

    where = where or mirrors()
    trust = trust or keyring()
    wanted = tuple(sorted(set(wanted)))
    indexes = [fetch_suite(store, where.url(archive_of(s)), s, arch=ARCH, keyring=trust)
               for s in suites(image.release)]
    packages = _mkosi_closure(store, indexes, trust, wanted)
    bootstrap = resolve(store, indexes, ["busybox-static"], base=(), keyring=trust)
    tools, pinned = resolve_tools_set(store, where, trust)
    return ImageSet(image.release, wanted, packages, bootstrap, tools, pinned)


def _mkosi_closure(store: Store, indexes: Sequence[SuiteIndex], trust: Path, wanted: Sequence[str] = (),
                   base: Sequence[str] | None = None) -> PackageSet:
    """What mkosi's two apt runs install: `?essential base-files`, then the request (`wanted` over
    `base`, by default that same essential set), as the union of both resolutions."""
    from tdxstore.packages.lock import PackageSet
    from tdxstore.packages.resolve import BASE_SET, resolve

    essential = resolve(store, indexes, [], keyring=trust)
    full = resolve(store, indexes, wanted, base=BASE_SET if base is None else base, keyring=trust)
    union = {p.name: p for p in essential.packages} | {p.name: p for p in full.packages}
    return PackageSet(full.arch, full.sources, tuple(union.values()))


def resolve_tools_set(store: Store, where: Mirrors | None = None,
                      trust: Path | None = None) -> tuple[PackageSet, PackageSet]:
    """mkosi's tools tree as mkosi installs it (`?essential base-files`, then `TOOLS_PACKAGES`), and
    the pinned tools (`pinned_set`), over the same verified trixie indexes.

    The request goes to apt as it is (not checked name by name: it holds virtual packages such as
    git-core and `?exact-name(...)` patterns, which apt resolves itself).
    """
    from tdxstore.mkosi.config import TOOLS_PACKAGES
    from tdxstore.packages.index import archive_of, fetch_suite
    from tdxstore.packages.resolve import BASE_SET

    where = where or mirrors()
    trust = trust or keyring()
    indexes = [fetch_suite(store, where.url(archive_of(s)), s, arch=ARCH, keyring=trust) for s in tools_suites()]
    return _mkosi_closure(store, indexes, trust, base=(*BASE_SET, *TOOLS_PACKAGES)), pinned_set(store, indexes)


def pinned_set(store: Store, indexes: Sequence[SuiteIndex]) -> PackageSet:
    """The pins of `tdxstore.debian.pins` as a locked set: each file found in a verified index, with
    the SHA-256 the pin has (`pin-mismatch` otherwise; `pin-superseded` when no index lists it)."""
    from tdxstore.debian.pins import DEFAULT_PINS
    from tdxstore.packages.index import entries
    from tdxstore.packages.lock import LockedPackage, PackageSet

    wanted = {f"{pin.pool}/{pin.file}": (name, pin) for name, pin in DEFAULT_PINS.by_package().items()}
    found: dict[str, LockedPackage] = {}
    for idx in indexes:
        for e in entries(store, idx):
            if e.filename in wanted and wanted[e.filename][0] not in found:
                name, pin = wanted[e.filename]
                if e.sha256 != pin.sha256:
                    raise PackageError(f"{idx.suite} lists {e.filename} with SHA-256 {e.sha256}, pins.py has "
                                       f"{pin.sha256}", code="pin-mismatch",
                                       hint="the archive and tdxstore/debian/pins.py disagree; check the mirror")
                found[name] = LockedPackage(e.name, e.version, e.arch, idx.suite, e.filename, e.sha256, e.size)
    missing = [f for f, (name, _) in wanted.items() if name not in found]
    if missing:
        raise PackageError(f"no verified index of {', '.join(i.suite for i in indexes)} lists the pinned {missing[0]}",
                           code="pin-superseded", hint="keep a tdx.lock that pins it ([debian.pinned]), or move "
                           "tdxstore/debian/pins.py to the version the archive has now")
    return PackageSet(indexes[0].arch, tuple(i.source for i in indexes), tuple(found.values()))


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
    return ImageSet(release, tuple(wanted), from_toml_dict(table, arch=ARCH), from_toml_dict(tools, arch=ARCH),
                    _read_tools(lock), _read_pinned(lock))


def _read_pinned(lock: Lockfile) -> PackageSet | None:
    """`[debian.pinned]`, or None when the lock has none (or not exactly the pinned tools)."""
    from tdxstore.debian.pins import PINNED_PACKAGES
    from tdxstore.packages.lock import from_toml_dict

    table = lock.debian.get(PINNED_SET)
    if table is None:
        return None
    pinned = from_toml_dict(table, arch=ARCH)
    return pinned if sorted(p.name for p in pinned.packages) == sorted(PINNED_PACKAGES) else None


def _read_tools(lock: Lockfile) -> PackageSet | None:
    """`[debian.tools]`, or None when the lock has none or it was resolved for another tools request."""
    from tdxstore.mkosi.config import TOOLS_PACKAGES, TOOLS_RELEASE
    from tdxstore.packages.lock import from_toml_dict

    table = lock.debian.get(TOOLS_SET)
    if table is None or table.get("release") != TOOLS_RELEASE or table.get("requested") != list(TOOLS_PACKAGES):
        return None
    return from_toml_dict(table, arch=ARCH)


def stale_reason(locked: ImageSet | None, release: str, wanted: Sequence[str]) -> str | None:
    """Why the lock does not pin this request (the first unpinned package first), or None if it does."""
    reason = _image_stale_reason(locked, release, wanted)
    if reason is not None or locked is None:
        return reason
    if locked.tools is None:
        return "tdx.lock pins no packages for mkosi's tools tree"
    return "tdx.lock does not pin mkosi, systemd-stub and OVMF" if locked.pinned is None else None


def _image_stale_reason(locked: ImageSet | None, release: str, wanted: Sequence[str]) -> str | None:
    """`stale_reason` for the image's own set only (the tools tree and the pins left out)."""
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

    if old is None:
        out = [f"+ deb {p.name} {p.version} ({p.suite})" for p in new.packages.packages]
    else:
        out = _set_changes(old.packages, new.packages, "deb")
    if new.tools is not None and (old is None or old.tools is None):
        out.append(f"+ tools tree: {len(new.tools.packages)} deb(s) "
                   f"({new.tools.total_size / 1e6:.0f} MB, {new.tools.sources[0].suite})")
    elif new.tools is not None and old is not None and old.tools is not None:
        out += _set_changes(old.tools, new.tools, "tools deb")
    if new.pinned is not None:
        out += _set_changes(old.pinned if old is not None and old.pinned is not None else
                            dataclasses.replace(new.pinned, packages=()), new.pinned, "pinned")
    return out


def _set_changes(old: PackageSet, new: PackageSet, what: str) -> list[str]:
    from tdxstore.packages.lock import diff

    added, removed, changed = diff(old, new)
    out = [f"+ {what} {n} {p.version} ({p.suite})" for n in added if (p := new.get(n)) is not None]
    out += [f"- {what} {n} {p.version}" for n in removed if (p := old.get(n)) is not None]
    out += [f"~ {what} {n}: {a} -> {b}" for n, a, b in changed]
    return out


def lock_image(store: Store, image: Image, old: Lockfile | None, *,
               update: bool = False) -> tuple[ImageSet | None, ImageSet]:
    """(old set, new set): the old one kept when it still pins the request and no update is asked."""
    before = read_image_set(old) if old is not None else None
    if not update and before is not None and stale_reason(before, image.release, requested(image)) is None:
        return before, before
    return before, relock(store, image, None if update else before, requested(image))


def relock(store: Store, image: Image, locked: ImageSet | None, wanted: Sequence[str]) -> ImageSet:
    """A new set for a stale lock: when only the tools tree or the pins are missing, they are added
    and the image's set is kept; otherwise the image's `wanted` packages are resolved again."""
    if (locked is not None and (locked.tools is None or locked.pinned is None)
            and _image_stale_reason(locked, image.release, requested(image)) is None):
        tools, pinned = resolve_tools_set(store)
        return dataclasses.replace(locked, tools=tools, pinned=pinned)
    return resolve_image_set(store, image, wanted)


def repo_derivation(store: Store, locked: ImageSet, where: Mirrors | None = None, *, fetch: bool = True,
                    progress: Callable[[int, int], None] | None = None) -> LockedRepos:
    """The repositories of the locked sets (image, tools tree) as derivations; with `fetch`, every
    `.deb` of them is made valid first.

    The bootstrap busybox is always fetched (the bootstrap root is content-addressed: its path is
    known only once it is unpacked).
    """
    from tdxstore.image.pipeline import LockedRepos
    from tdxstore.mkosi.config import TOOLS_RELEASE
    from tdxstore.packages import repo
    from tdxstore.packages.debs import deb_derivations, realise_debs
    from tdxstore.store.realise import Options, realise

    where = where or mirrors()
    bb = deb_derivations(locked.bootstrap, where)[repo.BOOTSTRAP_PACKAGE]
    if not store.is_valid(bb.out):
        realise(store, [bb], Options())
    root = repo.bootstrap_root(store, bb.out)
    sets = [(locked.packages, locked.release)] + ([(locked.tools, TOOLS_RELEASE)] if locked.tools else [])
    repos = []
    for pkgs, suite in sets:
        if fetch:
            realise_debs(store, pkgs, where, jobs=JOBS, progress=progress)
        repos.append(repo.repo_derivation(pkgs, deb_derivations(pkgs, where), root, suite=suite))
    return LockedRepos(repos[0], repos[1] if len(repos) > 1 else None, locked.pins())


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
               say: Callable[[str], None] = lambda _m: None) -> Callable[[Image, ImageFormat], LockedRepos] | None:
    """The `packages` hook of `tdx build` for a project with a tdx.lock (None without one: no pins).

    The hook checks that the lock pins what the image requests (with `frozen`, a mismatch is one
    error naming the first unpinned package; otherwise the set is re-resolved and the lock rewritten),
    then fetches the missing `.deb` files and returns the repository derivation. Without `fetch`
    (`--dry-run`, `--emit-mkosi`) no `.deb` of the set is fetched and the lock is never written.
    """
    if not lock_path.exists():
        return None

    def hook(image: Image, fmt: ImageFormat) -> LockedRepos:
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
            locked = relock(store, image, locked, (*requested(image), *wanted))
            for name, table in locked.tables().items():
                lock = with_debian_set(lock, name, table)
            if fetch:
                write_lock(lock_path, lock)
                say(f"wrote {lock_path}: {len(locked.packages.packages)} Debian package(s)")
            else:
                say(f"{len(locked.packages.packages)} Debian package(s) resolved; {lock_path} not written "
                    "(dry run)")
        assert locked is not None
        size = locked.packages.total_size + (locked.tools.total_size if locked.tools else 0)
        progress = _progress(say, size) if fetch else None
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

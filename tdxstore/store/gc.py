"""Garbage-collector roots, garbage collection and deletion (L2).

Roots are symlinks under `gcroots/` (direct: pointing into the store; indirect, under
`gcroots/auto/`: pointing at a user's result link, which points into the store; the root vanishes
when the result link is removed). gc and delete take the GC lock exclusively, so they never run
while another process adds, builds or roots (those hold it shared); rows go first, files second.
gc never deletes a path a root points to: a rooted path missing from the database stops it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from tdxstore._fs import remove_tree
from tdxstore._lock import locked
from tdxstore.errors import StoreError, TdxError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


@dataclass(frozen=True, slots=True)
class GcReport:
    deleted: tuple[StorePath, ...]
    garbage: tuple[str, ...] = field(default=())  # unregistered leftovers removed
    freed_bytes: int = 0
    dry_run: bool = False


def add_root(store: Store, link: Path, sp: StorePath) -> Path:
    """Make `link` a symlink to `sp` and register it as an indirect GC root.

    Takes the GC guard itself, but a caller that has just made `sp` valid must already hold
    `store.gc_guard()` from before `sp` became valid until this returns: otherwise a gc may run in
    the gap and delete `sp` (the root would then dangle). `tdx realise -o` and `tdx build -o` do so.
    """
    with store.gc_guard():
        return _add_root(store, Path(os.path.abspath(link)), sp)


def _add_root(store: Store, link: Path, sp: StorePath) -> Path:
    store.query(sp)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(store.real_path(sp), tmp)
    os.replace(tmp, link)
    auto = store.gcroots / "auto"
    auto.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(os.fsencode(link)).hexdigest()[:32]
    entry = auto / key
    if entry.is_symlink():
        entry.unlink()
    os.symlink(link, entry)
    return link


def roots(store: Store) -> dict[str, StorePath]:
    """Every live root: `{root link: store path}`; dangling or foreign links are ignored."""
    found: dict[str, StorePath] = {}
    for dirpath, dirs, files in os.walk(store.gcroots):
        # a link to a directory is listed among `dirs` (os.walk does not follow it)
        for f in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            entry = Path(dirpath) / f
            target = _resolve_root(store, entry)
            if target is not None:
                found[str(entry)] = target
    return found


def _resolve_root(store: Store, entry: Path) -> StorePath | None:
    link = entry
    for _ in range(4):  # gcroots/auto/x -> result -> store path
        if not link.is_symlink():
            return None
        target = os.readlink(link)
        try:
            return store.parse(target)
        except TdxError:
            link = Path(target)
    return None


def live_paths(store: Store) -> set[StorePath]:
    return store.closure(roots(store).values())


def collect_garbage(store: Store, *, dry_run: bool = False) -> GcReport:
    """Delete every path not reachable from a root, and every unregistered leftover."""
    with locked([store.locks / "gc.lock"]):
        _check_roots_registered(store)
        live = {p.base_name for p in live_paths(store)}
        dead = [b for b in store.db.all_paths() if b not in live]
        valid = set(store.db.all_paths())
        garbage = sorted(e.name for e in store.root.iterdir() if e.name not in valid)
        freed = sum(_disk_usage(store.root / b) for b in [*dead, *garbage])
        if not dry_run:
            _remove(store, dead)
            for g in garbage:
                remove_tree(store.root / g)
            _clean_tmp(store)
    return GcReport(tuple(StorePath.from_base_name(b) for b in dead), tuple(garbage), freed, dry_run)


def _check_roots_registered(store: Store) -> None:
    """Refuse to collect when a root points at a path on disk that the database does not know.

    Roots are only made for valid paths, so such a root means rows were lost (a replaced or
    restored database): the references of that path are unknown and nothing can be proven dead.
    """
    for link, sp in sorted(roots(store).items()):
        real = store.real_path(sp)
        if (real.exists() or real.is_symlink()) and not store.is_valid(sp):
            raise StoreError(f"the GC root {link!r} points at {sp}, which is on disk but not in the database",
                             hint="the database has lost rows: run `tdx store verify --repair-db`, then gc",
                             code="db-incomplete")


def delete_paths(store: Store, paths: list[StorePath]) -> int:
    """Delete specific valid paths; refused while referenced by another path or reachable from a root."""
    with locked([store.locks / "gc.lock"]):
        targets = {p.base_name for p in paths}
        for p in paths:
            store.query(p)
            users = [r for r in store.db.referrers(p.base_name) if r not in targets]
            if users:
                raise StoreError(f"cannot delete {p}: it is still referenced by {', '.join(users[:3])}",
                                 hint="delete the referrers first, or run `tdx store gc`", code="path-in-use")
        live = live_paths(store)
        for p in paths:
            if p in live:
                raise StoreError(f"cannot delete {p}: it is reachable from a GC root",
                                 hint="remove the root (a result link) first, see `tdx store roots`",
                                 code="path-rooted")
        freed = sum(_disk_usage(store.real_path(p)) for p in paths)
        _remove(store, sorted(targets))
    return freed


def _remove(store: Store, bases: list[str]) -> None:
    with store.db.transaction() as conn:
        store.db.delete(conn, bases)
    for b in bases:
        remove_tree(store.root / b)
        sp = StorePath.from_base_name(b)
        log = store.log_path(sp)
        if log.exists():
            log.unlink()


def stale_temporaries(store: Store) -> list[tuple[Path, int]]:
    """Entries of `tmp/` left by processes that no longer exist (killed builds, adds), with their size."""
    found = []
    for entry in sorted(store.tmp.iterdir()):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            found.append((entry, _disk_usage(entry)))
    return found


def _clean_tmp(store: Store) -> None:
    """Remove temporary directories of processes that no longer exist."""
    for entry, _ in stale_temporaries(store):
        remove_tree(entry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _disk_usage(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return os.lstat(path).st_size if (path.exists() or path.is_symlink()) else 0
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for n in files + dirs:
            total += os.lstat(os.path.join(dirpath, n)).st_size
    return total

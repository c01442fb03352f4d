"""`tdx lock` and the lock step of `tdx build` (L4): composes `lock/` (resolution) with `image/` (evaluation).

Locking resolves the project's declared modules, makes each a store path, evaluates the TDXfile
against exactly those to learn its `fetch()`/`fetch_git()` calls, and writes `tdx.lock`.
`prepare_build` is the one call `tdx build` makes before evaluating: it locks when there is no
lockfile, otherwise checks it (stale declarations, integrity) and returns the import paths;
with `frozen` it never resolves, and fetches outside the lock are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tdxstore.errors import LockfileError

if TYPE_CHECKING:
    from tdxstore.lock.lockfile import FetchEntry, Lockfile
    from tdxstore.lock.project import Project
    from tdxstore.store.store import Store

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_cmd)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _directory(path: Path) -> Path:
    return (path if path.is_dir() else path.parent).resolve()


def _index_url(project: Project, given: str | None) -> str:
    from tdxstore.lock.project import DEFAULT_INDEX

    return given or project.index_url or DEFAULT_INDEX


def _fetch_entries(tdxfile: Path, paths: list[Path], old: Lockfile | None) -> tuple[FetchEntry, ...]:
    """Evaluate the TDXfile against the locked modules; its fetches, keeping old `resolved_at` stamps."""
    from tdxstore.fetch import record
    from tdxstore.image.tdxfile import load_tdxfile
    from tdxstore.lock.lockfile import FetchEntry

    record.clear()
    load_tdxfile(tdxfile, paths)
    stamps = {f.key: f.resolved_at for f in old.fetches} if old is not None else {}
    out = []
    for rec in record.recorded():
        entry = FetchEntry(**rec.as_lock_entry())
        if entry.key in stamps:
            entry = dataclasses.replace(entry, resolved_at=stamps[entry.key])
        out.append(entry)
    return tuple(out)


def lock_project(directory: Path, store: Store, *, update: frozenset[str] | None = None,
                 index_url: str | None = None) -> tuple[Lockfile | None, Lockfile, list[Path]]:
    """(old lock or None, new lock, import paths) for the image project in `directory`; writes nothing."""
    from tdxstore.image.tdxfile import TDXFILE_NAME
    from tdxstore.lock.lockfile import LOCK_NAME, read_lock
    from tdxstore.lock.materialise import import_paths
    from tdxstore.lock.project import read_project
    from tdxstore.lock.resolve import Request, resolve

    project = read_project(directory, required=False)
    lock_path = directory / LOCK_NAME
    old = read_lock(lock_path) if lock_path.exists() else None
    index = _index_url(project, index_url)
    new = resolve(Request(project, index, update), old, store)
    paths = import_paths(store, new.modules, directory, index)
    tdxfile = directory / TDXFILE_NAME
    if tdxfile.is_file():
        new = dataclasses.replace(new, fetches=_fetch_entries(tdxfile, paths, old))
        new = _build_roots(tdxfile, paths, new, store)
        new = _with_packages(new, old, tdxfile, paths, store, update=update is not None and not update)
    return old, new, paths


def _build_roots(tdxfile: Path, paths: list[Path], new: Lockfile, store: Store) -> Lockfile:
    """The `[build-root]` section for the TDXfile's builds (tdxstore/cli/builds.py)."""
    from tdxstore.cli.builds import lock_build_roots
    from tdxstore.image.tdxfile import load_tdxfile

    return lock_build_roots(store, load_tdxfile(tdxfile, paths).builds, new)


def _build_root_changes(old: Lockfile | None, new: Lockfile) -> list[str]:
    from tdxstore.cli.builds import section_changes

    return section_changes(old, new)


def _with_packages(new: Lockfile, old: Lockfile | None, tdxfile: Path, paths: list[Path], store: Store, *,
                   update: bool) -> Lockfile:
    """The image's Debian package set into the lock (`tdxstore.cli.debian`); kept unless stale or updated."""
    from tdxstore.cli.debian import lock_into

    return lock_into(new, old, tdxfile, paths, store, update=update)


def lock_cmd(
    names: list[str] | None = typer.Argument(None, help="With --update: only these modules."),
    update: bool = typer.Option(False, "--update", help="Re-resolve all modules, or only the NAMES given."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would change; write nothing."),
    project: Path = typer.Option(Path("."), "--project", "-p", help="The image project directory."),
    index_url: str | None = typer.Option(None, "--index-url", envvar="TDX_INDEX_URL",
                                         help="Package index (PEP 503); credentials here never enter the lock."),
    offline: bool = typer.Option(False, "--offline", help="Use only what the store holds; list what is missing "
                                                          "up front."),
) -> None:
    """Resolve the modules pyproject.toml declares and pin them (and the TDXfile's fetches) in tdx.lock."""
    from packaging.utils import canonicalize_name

    from tdxstore.cli.app import open_store
    from tdxstore.errors import UsageError
    from tdxstore.lock.lockfile import LOCK_NAME, diff_locks, write_lock

    if names and not update:
        raise UsageError("module names are only accepted with --update", hint="tdx lock --update NAME",
                         code="usage")
    directory = _directory(project)
    wanted = frozenset(canonicalize_name(n) for n in names or ()) if update else None
    _offline(offline)
    old, new, _ = lock_project(directory, open_store(), update=wanted, index_url=index_url)
    changes = diff_locks(old, new) + _build_root_changes(old, new) + _package_changes(old, new)
    for line in changes:
        print(line)
    lock_path = directory / LOCK_NAME
    if dry_run:
        _say(f"{lock_path}: {len(changes)} change(s) (dry run: nothing written)" if changes
             else f"{lock_path} is up to date (dry run)")
        return
    if old is None or old != new:
        write_lock(lock_path, new)
        _say(f"wrote {lock_path}: {len(new.modules)} module(s), {len(new.fetches)} fetch(es)")
    else:
        _say(f"{lock_path} is up to date")


def _offline(on: bool) -> None:
    """`--offline`: no download (`tdxstore/fetch/offline.py`); what is missing is one offline-missing error."""
    from tdxstore.fetch import offline

    offline.enable(on)


def _package_changes(old: Lockfile | None, new: Lockfile) -> list[str]:
    from tdxstore.cli.debian import lock_changes

    return lock_changes(old, new)


def _stale(lock: Lockfile, project: Project, lock_path: Path) -> LockfileError:
    added = sorted(set(project.requires) - set(lock.requires))
    removed = sorted(set(lock.requires) - set(project.requires))
    lines = [f"  pyproject.toml declares {r!r}, tdx.lock does not" for r in added]
    lines += [f"  tdx.lock was made from {r!r}, pyproject.toml no longer declares it" for r in removed]
    first = (f"{added[0]!r} is new" if added else f"{removed[0]!r} was removed") if lines else "declarations changed"
    return LockfileError(f"{lock_path} is stale: {first} in pyproject.toml",
                         hint="run `tdx lock` and commit tdx.lock", detail="\n".join(lines) or None,
                         code="lock-stale")


def prepare_build(tdxfile: Path, frozen: bool = False, index_url: str | None = None) -> list[Path]:
    """Lock or check the image project of `tdxfile`; the import paths its evaluation must use.

    A TDXfile with neither a pyproject.toml nor a tdx.lock beside it is not an image project:
    nothing is locked (and `frozen` fails). With `frozen`, a missing or stale lock fails and
    unlocked fetches are refused.
    """
    import os

    from tdxstore.cli.app import open_store
    from tdxstore.fetch import record
    from tdxstore.lock.lockfile import LOCK_NAME, read_lock, write_lock
    from tdxstore.lock.materialise import import_paths
    from tdxstore.lock.project import PYPROJECT, check_sdk, read_project

    directory = _directory(tdxfile)
    lock_path = directory / LOCK_NAME
    index_url = index_url or os.environ.get("TDX_INDEX_URL") or None
    if not (directory / PYPROJECT).is_file() and not lock_path.exists():
        if frozen:
            raise LockfileError(f"--frozen: {str(directory)!r} has neither {PYPROJECT} nor {LOCK_NAME}",
                                hint="declare the modules in pyproject.toml (if any) and run `tdx lock`",
                                code="lock-missing")
        return []
    store = open_store()
    try:
        if not lock_path.exists():
            if frozen:
                raise LockfileError(f"--frozen: tdx.lock is missing ({lock_path})", code="lock-missing",
                                    hint="run `tdx lock` and commit tdx.lock")
            _, new, paths = lock_project(directory, store, index_url=index_url)
            write_lock(lock_path, new)
            _say(f"wrote {lock_path}: {len(new.modules)} module(s), {len(new.fetches)} fetch(es)")
            return paths
        lock = read_lock(lock_path)
        project = read_project(directory, required=False)
        if lock.requires_hash != project.requires_hash:
            raise _stale(lock, project, lock_path)
        check_sdk(project.sdk)
        paths = import_paths(store, lock.modules, directory, _index_url(project, index_url))
    finally:
        store.close()
    if frozen:
        record.allow_only(frozenset(f.key for f in lock.fetches))
    return paths

"""Locked modules as store paths (L3): the directories a TDXfile's imports are served from.

A wheel is a flat fixed-output path (its SHA-256 and file name), downloaded only when that path is
not valid, then unpacked (a wheel is a zip) into a second, NAR-addressed path. A git or local module
is its hashed file list (§8.3) copied into a NAR-addressed path. Integrity is checked every time an
entry becomes a path: a wheel by its SHA-256, a tree by its tree hash. Index credentials are used
for the download only; the store, the lock and the fetch derivations never see them. Which path
holds an entry is remembered in `<store home>/lock-trees-v1/`, a cache checked for validity on use.
"""

from __future__ import annotations

import logging
import re
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from tdxstore._fs import atomic_write
from tdxstore.errors import FetchError, HashMismatchError, LockfileError, TdxError
from tdxstore.fetch import offline
from tdxstore.fetch.download import download
from tdxstore.fetch.git import fetch_git_tree
from tdxstore.lock.lockfile import ModuleEntry, ModuleSource
from tdxstore.lock.module import import_root
from tdxstore.store.path import MAX_NAME_LEN, StorePath, make_fixed_output_path
from tdxstore.store.store import Store
from tdxstore.store.tree import copy_module_tree, tree_hash

log = logging.getLogger(__name__)

CACHE_DIR = "lock-trees-v1"
_NAME_BAD = re.compile(r"[^A-Za-z0-9+\-._?=]+")


def store_name(text: str) -> str:
    return _NAME_BAD.sub("_", text).lstrip(".")[:MAX_NAME_LEN] or "module"


def _cached(store: Store, key: str) -> StorePath | None:
    try:
        sp = store.parse((store.home / CACHE_DIR / key).read_text().strip())
    except (OSError, ValueError, TdxError):  # no entry, or a corrupt one: a miss, never an error
        return None
    return sp if store.is_valid(sp) else None


def _remember(store: Store, key: str, sp: StorePath) -> None:
    atomic_write(store.home / CACHE_DIR / key, sp.logical.encode())


def wheel_file_name(url: str) -> str:
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name.endswith(".whl"):
        raise LockfileError(f"{url!r} is not a wheel", hint="tdx locks wheels only (no source distributions)",
                            code="lock-invalid-entry")
    return name


def with_credentials(url: str, index_url: str | None) -> str:
    """`url` with the index's user:password when both are on the same host (for the download only)."""
    if not index_url:
        return url
    index, parts = urlsplit(index_url), urlsplit(url)
    if index.password is None and index.username is None:
        return url
    if (parts.hostname, parts.port) != (index.hostname, index.port) or parts.username is not None:
        return url
    return urlunsplit((parts.scheme, index.netloc, parts.path, parts.query, parts.fragment))


def download_wheel(url: str, dest: Path, hex_digest: str | None, index_url: str | None) -> str:
    """Download a wheel (with the index's credentials if it has any); errors never show them."""
    secret_url = with_credentials(url, index_url)
    try:
        return download(secret_url, dest, expected_sha256=hex_digest)
    except HashMismatchError:
        raise
    except FetchError as e:
        e.message = e.message.replace(secret_url, url)
        e.detail = e.detail.replace(secret_url, url) if e.detail else e.detail
        e.args = (e.message,)
        raise


def _integrity_error(entry: ModuleEntry, got: str) -> LockfileError:
    return LockfileError(f"module {entry.name} {entry.version} does not match tdx.lock: "
                         f"expected {entry.integrity}, got {got}",
                         hint=f"if the new content is trusted, run `tdx lock --update {entry.name}`",
                         code="integrity-mismatch")


def wheel_path(store: Store, entry: ModuleEntry, index_url: str | None = None) -> StorePath:
    """The flat store path of the entry's wheel, downloaded (and verified) if it is not there yet."""
    assert entry.url is not None
    hex_digest = entry.integrity.removeprefix("sha256:")
    name = store_name(wheel_file_name(entry.url))
    sp = _wheel_store_path(entry)
    if store.is_valid(sp):
        return sp
    with store.temp_dir("lock-wheel") as tmp:
        staged = tmp / name
        try:
            download_wheel(entry.url, staged, hex_digest, index_url)
        except HashMismatchError as e:
            raise _integrity_error(entry, e.got) from e
        except FetchError as e:
            raise LockfileError(f"cannot download module {entry.name} {entry.version} from {entry.url}",
                                hint="check the network and the index; the lock pins this exact file",
                                detail=e.message, code="module-download-failed") from e
        added = store.add_flat(staged, name=name)
    assert added == sp
    return sp


def _unpack_wheel(wheel: Path, dest: Path) -> None:
    dest.mkdir()
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.filename.startswith("/") or ".." in parts or "\\" in info.filename:
                raise LockfileError(f"wheel {wheel.name} holds an unsafe member {info.filename!r}",
                                    code="lock-invalid-entry")
        z.extractall(dest)


def _wheel_store_path(entry: ModuleEntry) -> StorePath:
    """Where the entry's wheel is (or will be) in the store: a flat fixed-output path of its SHA-256."""
    assert entry.url is not None
    return make_fixed_output_path(entry.integrity.removeprefix("sha256:"), store_name(wheel_file_name(entry.url)),
                                  recursive=False)


def _tree_key(entry: ModuleEntry) -> str:
    """The key under which the store remembers the entry's unpacked tree (`_cached`/`_remember`)."""
    return f"{entry.source.value}-{entry.integrity.removeprefix('sha256:')}"


def tree_path(store: Store, entry: ModuleEntry, project_dir: Path, index_url: str | None = None) -> StorePath:
    """The NAR-addressed store path holding the entry's importable files (wheel unpacked, or the tree)."""
    key = _tree_key(entry)
    name = store_name(f"{entry.name}-{entry.version}")
    if entry.source is ModuleSource.LOCAL:
        assert entry.path is not None
        got = tree_hash(project_dir / entry.path)
        if got != entry.integrity:
            raise LockfileError(f"local module {entry.name} at {entry.path} changed since tdx.lock was written "
                                f"(expected {entry.integrity}, got {got})",
                                hint=f"run `tdx lock` to record it (tdx.lock pins {entry.path} by content)",
                                code="integrity-mismatch")
    cached = _cached(store, key)
    if cached is not None:
        return cached
    with store.temp_dir("lock-tree") as tmp:
        staged = tmp / name
        if entry.source is ModuleSource.PYPI:
            _unpack_wheel(store.real_path(wheel_path(store, entry, index_url)), staged)
        elif entry.source is ModuleSource.LOCAL:
            assert entry.path is not None
            copy_module_tree(project_dir / entry.path, staged)
        else:
            _fetch_git_tree(entry, tmp, staged)
        sp = store.add_path(staged, name=name)
    _remember(store, key, sp)
    return sp


def _fetch_git_tree(entry: ModuleEntry, tmp: Path, staged: Path) -> None:
    assert entry.git is not None and entry.resolved_rev is not None
    checkout = tmp / "checkout"
    try:
        fetch_git_tree(entry.git, checkout, rev=entry.resolved_rev)
    except FetchError as e:
        raise LockfileError(f"cannot fetch git module {entry.name} at {entry.resolved_rev} from {entry.git}",
                            detail=e.message, hint="check the repository URL and the network",
                            code="module-download-failed") from e
    got = copy_module_tree(checkout, staged, standalone=True)
    if got != entry.integrity:
        raise _integrity_error(entry, got)


def import_paths(store: Store, entries: tuple[ModuleEntry, ...], project_dir: Path,
                 index_url: str | None = None) -> list[Path]:
    """The sys.path entries of every locked module, in lock order (by name).

    `--offline`: a module whose tree is not in the store (and would be downloaded) is noted as missing
    and left out, so the one offline-missing error lists it with everything else the run lacks.
    """
    out = []
    for entry in entries:
        if offline.enabled() and _needs_network(store, entry):
            offline.note(f"module {entry.name} {entry.version} ({entry.url or entry.git})")
            continue
        sp = tree_path(store, entry, project_dir, index_url)
        root = store.real_path(sp)
        out.append(root if entry.source is ModuleSource.PYPI else import_root(root))
    return out


def _needs_network(store: Store, entry: ModuleEntry) -> bool:
    if entry.source is ModuleSource.LOCAL:
        return False
    if _cached(store, _tree_key(entry)) is not None:
        return False
    if entry.source is ModuleSource.PYPI and entry.url is not None:
        return not store.is_valid(_wheel_store_path(entry))
    return True


def temporary_checkout(url: str, ref: str) -> tuple[tempfile.TemporaryDirectory[str], Path, str]:
    """Check out `ref` (tag, or a full commit id) of `url`; (holder, tree, commit). Errors name the ref."""
    holder = tempfile.TemporaryDirectory(prefix="tdx-lock-git-")
    tree = Path(holder.name) / "tree"
    is_rev = re.fullmatch(r"[0-9a-f]{40}", ref) is not None
    try:
        commit = fetch_git_tree(url, tree, rev=ref if is_rev else None, tag=None if is_rev else ref)
    except FetchError as e:
        holder.cleanup()
        if e.code == "git-ref-not-found":
            raise LockfileError(f"git module {url}@{ref}: {e.message}", hint=e.hint,
                                code="git-ref-not-found") from e
        raise LockfileError(f"cannot fetch git module {url}@{ref}", detail=e.detail or e.message,
                            hint="check the repository URL and the network", code="module-download-failed") from e
    except BaseException:
        holder.cleanup()
        raise
    return holder, tree, commit

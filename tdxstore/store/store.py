"""The local store: maps StorePaths to `$TDX_HOME/store/`, adds content, installs build outputs (L2).

Invariant: a path is valid iff it has a database row, and a row is only written after the complete,
normalised tree has been renamed into place. Every add follows Nix's order: check valid → take the
per-path lock → re-check → write into `tmp/` → normalise, hash → rename → register → unlock. A crash
at any step leaves at most an unregistered directory, which is invalid and removed by `gc`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tdxstore._fs import fsync_dir, remove_tree, temporary_directory
from tdxstore._lock import FileLock, locked
from tdxstore.errors import StoreError, StorePathError, full_disk_is_an_error
from tdxstore.store import base32
from tdxstore.store.db import Database, PathInfo
from tdxstore.store.nar import NarDigest, copy_and_hash, hash_and_scan, hash_path
from tdxstore.store.normalise import normalise_tree
from tdxstore.store.path import (
    STORE_DIR,
    StorePath,
    check_name,
    make_fixed_output_path,
    make_text_path,
)

if TYPE_CHECKING:
    from tdxstore.store.cache import Substituters


def default_home() -> Path:
    """`$TDX_HOME`, else `$XDG_DATA_HOME/tdx`, else `~/.local/share/tdx`."""
    if os.environ.get("TDX_HOME"):
        return Path(os.environ["TDX_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tdx"


def _check_database_present(home: Path) -> None:
    """A missing or empty database beside a non-empty store directory is a damaged store.

    Opening it as usual would create an empty database, and the store would look empty: `ls` would
    list nothing and `gc` would treat every path as garbage. Refuse instead, with the repair command.
    """
    db = home / "db.sqlite"
    if db.exists() and db.stat().st_size > 0:
        return
    entries = [e.name for e in os.scandir(home / "store") if not e.name.startswith(".")]
    if not entries:
        return
    state = "is empty" if db.exists() else "is missing"
    raise StoreError(f"the store database {str(db)!r} {state}, but {str(home / 'store')!r} holds "
                     f"{len(entries)} entries: the store is damaged, not empty",
                     hint="run `tdx store verify --repair-db` to rebuild the database from the store contents",
                     code="db-missing")


def content_address(sha256: bytes, *, recursive: bool) -> str:
    return f"fixed:{'r:' if recursive else ''}sha256:{base32.encode(sha256)}"


class Store:
    """A store rooted at `home` (physical); paths are presented at the logical `/tdx/store`."""

    def __init__(self, home: Path, db: Database) -> None:
        self.home = home
        self.root = home / "store"
        self.tmp = home / "tmp"
        self.locks = home / "locks"
        self.gcroots = home / "gcroots"
        self.logs = home / "logs"
        self.db = db
        self._guard_lock = threading.Lock()
        self._guard_depth = 0
        self._guard: FileLock | None = None
        #: set by a command for its whole run: no download (`--offline`), and the caches to substitute from
        self.offline = False
        self.substituters: Substituters | None = None

    @classmethod
    def open(cls, home: Path | None = None) -> Store:
        home = (home or default_home()).absolute()
        try:
            for sub in ("store", "tmp", "locks", "gcroots", "logs"):
                (home / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store under {str(home)!r}: {e.strerror}",
                             hint="set TDX_HOME to a writable directory", code="store-not-writable") from e
        if not os.access(home / "store", os.W_OK) or not os.access(home, os.W_OK):
            raise StoreError(f"the store directory {str(home)!r} is not writable",
                             hint="fix its permissions or set TDX_HOME to a writable directory",
                             code="store-not-writable")
        _check_database_present(home)
        return cls(home, Database(home / "db.sqlite"))

    def close(self) -> None:
        self.db.close()

    # -- naming ---------------------------------------------------------------------------------

    def real_path(self, sp: StorePath) -> Path:
        return self.root / sp.base_name

    def parse(self, text: str | os.PathLike[str]) -> StorePath:
        """A StorePath from its logical (`/tdx/store/…`) or physical location."""
        s = os.fspath(text).rstrip("/")
        if s.startswith(STORE_DIR + "/"):
            return StorePath.parse(s)
        p = Path(s).absolute()
        if p.parent == self.root:
            return StorePath.from_base_name(p.name)
        if p.is_symlink():  # a result link
            return self.parse(os.readlink(p))
        raise StorePathError(f"path {s!r} is not in the store",
                             hint=f"give a path under {STORE_DIR} or {str(self.root)!r}", code="not-in-store")

    def logicalise(self, data: bytes) -> bytes:
        """`data` with every physical store location (`$TDX_HOME/store/…`) written at `/tdx/store/…`.

        What a TDXfile renders must not depend on where the store lives: a path from `fetch()` is
        physical for host-side Python, and becomes logical wherever it is written into an image.
        """
        for root in dict.fromkeys((os.fspath(self.root), os.fspath(self.root.resolve()))):
            data = data.replace(root.encode() + b"/", STORE_DIR.encode() + b"/")
        return data

    def is_valid(self, sp: StorePath) -> bool:
        return self.db.is_valid(sp.base_name)

    def query(self, sp: StorePath) -> PathInfo:
        info = self.db.query(sp.base_name)
        if info is None:
            raise StoreError(f"path {sp} is not valid in this store",
                             hint="add or build it first (`tdx store add`, `tdx realise`)", code="path-not-valid")
        return info

    def log_path(self, sp: StorePath) -> Path:
        return self.logs / sp.hash_part[:2] / f"{sp.base_name}.log.zst"

    # -- locking --------------------------------------------------------------------------------

    def path_lock(self, sp: StorePath) -> FileLock:
        return FileLock(self.locks / f"{sp.base_name}.lock")

    @contextmanager
    def path_locks(self, sps: Iterable[StorePath]) -> Iterator[None]:
        with locked(self.locks / f"{sp.base_name}.lock" for sp in sps):
            yield

    @contextmanager
    def gc_guard(self) -> Iterator[None]:
        """Held (shared) while adding, building or rooting, so that a concurrent gc waits.

        Re-entrant within this Store (any thread): the flock is taken when the outermost holder enters
        and released when the last one leaves. A command that makes a path valid and then roots it
        holds the guard across both, so gc never sees the path valid but not yet rooted.
        """
        with self._guard_lock:
            if self._guard_depth == 0:
                lock = FileLock(self.locks / "gc.lock")
                lock.acquire(shared=True)
                self._guard = lock
            self._guard_depth += 1
        try:
            yield
        finally:
            with self._guard_lock:
                self._guard_depth -= 1
                if self._guard_depth == 0 and self._guard is not None:
                    self._guard.release()
                    self._guard = None

    @contextmanager
    def temp_dir(self, prefix: str) -> Iterator[Path]:
        with temporary_directory(self.tmp, f"{os.getpid()}-{prefix}") as d:
            yield d

    # -- adding content -------------------------------------------------------------------------

    def add_path(self, src: Path, name: str | None = None, *,
                 references: Iterable[StorePath] = ()) -> StorePath:
        """Add a file or tree by the SHA-256 of its NAR (as `nix-store --add`).

        Each byte is read once: copied into `tmp/` while its NAR is hashed (the copy is already
        canonical), then the path is named after that hash, locked, renamed and registered.
        `references` (valid paths the tree mentions, e.g. a configuration naming a fetched file) are
        recorded and, as in Nix's `source` paths, part of the path's hash.
        """
        src = Path(src)
        if not src.exists() and not src.is_symlink():
            raise StoreError(f"cannot add {str(src)!r}: no such file or directory", code="source-missing")
        name = src.name if name is None else name
        check_name(name)  # before the copy, not after it
        refs = sorted(set(references))
        for ref in refs:
            if not self.is_valid(ref):
                raise StoreError(f"cannot add {str(src)!r} with reference {ref}: that path is not valid",
                                 hint="add or build the referenced path first", code="path-not-valid")
        with self._space_for(src), self.gc_guard(), self.temp_dir("add") as tmp:
            staged = tmp / "out"
            digest = copy_and_hash(src, staged)
            sp = make_fixed_output_path(digest.hex, name, recursive=True, references=refs)
            self._install_ca(staged, sp, digest, content_address(digest.sha256, recursive=True),
                             references=refs)
        return sp

    def add_flat(self, src: Path, name: str | None = None) -> StorePath:
        """Add one regular file by the SHA-256 of its bytes (fetch results); each byte is read once."""
        src = Path(src)
        if not src.is_file():
            raise StoreError(f"cannot add {str(src)!r} as a flat file: not a regular file", code="source-missing")
        name = src.name if name is None else name
        check_name(name)
        with self._space_for(src), self.gc_guard(), self.temp_dir("add") as tmp:
            staged = tmp / "out"
            flat = hashlib.sha256()
            digest = copy_and_hash(src, staged, contents=flat.update)
            if not staged.is_file() or staged.is_symlink():  # replaced by a directory meanwhile
                raise StoreError(f"{str(src)!r} changed while it was being added", code="source-changed")
            sp = make_fixed_output_path(flat.hexdigest(), name, recursive=False)
            self._install_ca(staged, sp, digest, content_address(flat.digest(), recursive=False))
        return sp

    def add_bytes(self, name: str, data: bytes, executable: bool = False) -> StorePath:
        """Add a single file with `data` (recursive content address, like add_path)."""
        with self.temp_dir("bytes") as tmp:
            f = tmp / "f"
            f.write_bytes(data)
            f.chmod(0o755 if executable else 0o644)
            return self.add_path(f, name)

    def add_text(self, name: str, data: bytes, references: Iterable[StorePath] = ()) -> StorePath:
        """Add a text file whose path also commits to its references (used for .drv files)."""
        refs = sorted(set(references))
        sp = make_text_path(hashlib.sha256(data).hexdigest(), name, refs)
        if self.is_valid(sp):
            return sp
        with self.gc_guard(), self.path_locks([sp]):
            if self.is_valid(sp):
                return sp
            with self.temp_dir("text") as tmp:
                staged = tmp / "out"
                staged.write_bytes(data)
                self.install(staged, sp, references=refs,
                             ca=f"text:sha256:{base32.encode(hashlib.sha256(data).digest())}")
        return sp

    def _space_for(self, src: Path) -> AbstractContextManager[None]:
        """A full disk while adding `src` is one NoSpaceError naming the store and `src`'s size."""
        return full_disk_is_an_error(self.tmp, f"adding {str(src)!r}", lambda: _tree_size(src))

    def _install_ca(self, staged: Path, sp: StorePath, digest: NarDigest, ca: str,
                    references: Iterable[StorePath] = ()) -> None:
        with self.path_locks([sp]):
            if not self.is_valid(sp):
                self.install(staged, sp, references=references, ca=ca, digest=digest)

    def install(self, staged: Path, sp: StorePath, *, references: Iterable[StorePath] = (),
                scan: Iterable[StorePath] | None = None, deriver: StorePath | None = None,
                ca: str | None = None, impure: bool = False, digest: NarDigest | None = None,
                signatures: Iterable[str] = ()) -> PathInfo:
        """Move a finished tree into place and register it. The caller holds the path lock.

        `references` are recorded as given; `scan` are candidates whose hash part is searched for in the
        tree (plus the path itself, for self-references). Normalises and hashes the tree first, unless
        the caller passes the `digest` it computed in the pass that wrote the tree, already canonical
        (`copy_and_hash`, a fetch, an import): then the tree is read no more. `signatures` are
        registered in the same transaction as the path.
        """
        refs = set(references)
        if digest is not None:
            if scan is not None:
                raise StoreError("install: a precomputed digest cannot be combined with a reference scan",
                                 code="internal-error")
        elif scan is not None:
            normalise_tree(staged)
            candidates = {c.hash_part: c for c in scan} | {sp.hash_part: sp}
            digest, found = hash_and_scan(staged, candidates)
            refs |= {candidates[h] for h in found}
        else:
            normalise_tree(staged)
            digest = hash_path(staged)
        dest = self.real_path(sp)
        if dest.exists() or dest.is_symlink():
            remove_tree(dest)  # an unregistered leftover of an interrupted operation
        os.rename(staged, dest)
        fsync_dir(self.root)
        info = PathInfo(path=sp, nar_hash=f"sha256:{digest.sha256.hex()}", nar_size=digest.size,
                        references=tuple(sorted(refs)), registration_time=int(time.time()),
                        deriver=deriver, ca=ca, impure=impure)
        with self.db.transaction() as conn:
            self.db.insert(conn, info)
            self.db.add_signatures(conn, sp.base_name, signatures)
        return info

    # -- graph ------------------------------------------------------------------------------------

    def references(self, sp: StorePath) -> list[StorePath]:
        return [StorePath.from_base_name(b) for b in self.db.references(sp.base_name)]

    def referrers(self, sp: StorePath) -> list[StorePath]:
        return [StorePath.from_base_name(b) for b in self.db.referrers(sp.base_name)]

    def closure(self, paths: Iterable[StorePath]) -> set[StorePath]:
        """Every valid path reachable from `paths` through references (invalid starts are skipped)."""
        seen: set[str] = set()
        todo = [p.base_name for p in paths if self.is_valid(p)]
        while todo:
            base = todo.pop()
            if base in seen:
                continue
            seen.add(base)
            todo.extend(r for r in self.db.references(base) if r not in seen)
        return {StorePath.from_base_name(b) for b in seen}


def _tree_size(path: Path) -> int:
    """Bytes of the regular files of a file or tree (what a copy of it needs, roughly)."""
    if not path.is_dir() or path.is_symlink():
        return os.lstat(path).st_size
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(path) for f in files)

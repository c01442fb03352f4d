"""Store verification and database repair (L2).

`verify` re-hashes every valid path against its recorded NAR hash and reports missing and corrupted
paths and unregistered leftovers; it never deletes content. `repair_database` rebuilds the database
from what is on disk when it is unreadable (moved aside first), or drops rows of missing paths
(and, transitively, of paths that referenced them) when it is readable.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import StoreError
from tdxstore.store import base32
from tdxstore.store.db import Database, PathInfo
from tdxstore.store.nar import hash_and_scan, hash_path
from tdxstore.store.path import StorePath, make_fixed_output_path, make_text_path
from tdxstore.store.store import Store, default_home


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    missing: tuple[StorePath, ...]
    corrupted: tuple[tuple[StorePath, str, str], ...]  # path, expected, got
    garbage: tuple[str, ...]
    repaired: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted


def verify_store(store: Store, *, check_contents: bool = True) -> VerifyReport:
    missing: list[StorePath] = []
    corrupted: list[tuple[StorePath, str, str]] = []
    valid = store.db.all_paths()
    for base in valid:
        sp = StorePath.from_base_name(base)
        real = store.real_path(sp)
        if not real.exists() and not real.is_symlink():
            missing.append(sp)
            continue
        if check_contents:
            info = store.query(sp)
            got = f"sha256:{hash_path(real).sha256.hex()}"
            if got != info.nar_hash:
                corrupted.append((sp, info.nar_hash, got))
    names = set(valid)
    garbage = tuple(sorted(e.name for e in store.root.iterdir() if e.name not in names))
    return VerifyReport(len(valid), tuple(missing), tuple(corrupted), garbage)


def drop_missing(store: Store, missing: list[StorePath]) -> list[str]:
    """Invalidate missing paths and everything that (transitively) refers to them."""
    doomed: set[str] = set()
    todo = [m.base_name for m in missing]
    while todo:
        b = todo.pop()
        if b not in doomed:
            doomed.add(b)
            todo.extend(store.db.referrers(b))
    with store.db.transaction() as conn:
        store.db.delete(conn, sorted(doomed))
    return sorted(doomed)


def repair_database(home: Path | None = None) -> list[str]:
    """Rebuild `db.sqlite` from the store directory; the unreadable file is kept beside it."""
    home = (home or default_home()).absolute()
    db_path = home / "db.sqlite"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{db_path}{suffix}")
        if p.exists():
            os.replace(p, Path(f"{db_path}.corrupt-{stamp}{suffix}"))
    store = Store(home, Database(db_path))
    entries = sorted(e.name for e in (home / "store").iterdir() if not e.name.startswith("."))
    paths = {}
    for name in entries:
        try:
            paths[name] = StorePath.from_base_name(name)
        except StoreError:
            continue
    by_hash = {sp.hash_part: sp for sp in paths.values()}
    scanned: dict[str, tuple[PathInfo, set[str]]] = {}
    for base, sp in paths.items():
        digest, found = hash_and_scan(store.real_path(sp), by_hash)
        refs = {by_hash[h] for h in found if h != sp.hash_part}
        info = PathInfo(path=sp, nar_hash=f"sha256:{digest.sha256.hex()}", nar_size=digest.size,
                        references=tuple(sorted(refs | ({sp} if sp.hash_part in found else set()))),
                        registration_time=int(time.time()), ca=_guess_ca(store, sp, digest.sha256, refs))
        scanned[base] = (info, {r.base_name for r in refs})
    done: set[str] = set()

    def register(base: str, stack: tuple[str, ...] = ()) -> None:
        if base in done or base in stack:
            return
        info, deps = scanned[base]
        for d in sorted(deps):
            register(d, (*stack, base))
        with store.db.transaction() as conn:
            store.db.insert(conn, info)
        done.add(base)

    for base in sorted(scanned):
        register(base)
    store.close()
    return sorted(done)


def _guess_ca(store: Store, sp: StorePath, nar_sha: bytes, refs: set[StorePath]) -> str | None:
    """Recover the content address when the path name proves it (else the path is input-addressed)."""
    real = store.real_path(sp)
    if not refs and make_fixed_output_path(nar_sha.hex(), sp.name, recursive=True) == sp:
        return f"fixed:r:sha256:{base32.encode(nar_sha)}"
    if real.is_file() and not real.is_symlink():
        flat = hashlib.sha256(real.read_bytes()).digest()
        if not refs and make_fixed_output_path(flat.hex(), sp.name, recursive=False) == sp:
            return f"fixed:sha256:{base32.encode(flat)}"
        if make_text_path(flat.hex(), sp.name, refs) == sp:
            return f"text:sha256:{base32.encode(flat)}"
    return None

"""Moving store paths between stores: the metadata a path travels with, and its safe arrival (L3).

Bundles (`bundle.py`) and binary caches (`cache.py`) both carry a `PathRecord` per path and its NAR,
which leaves the store only through `CheckedDump`: checked against its registered hash as it is sent.
Arrival never trusts the sender: a NAR is restored under `tmp/` (created canonical) from a source
that hashes it and stops at the declared size, checked against the declared hash before anything is
registered; a content-addressed path must hash to its own name; references must be valid or arrive
first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tdxstore._fs import remove_tree
from tdxstore.errors import NarError, StorePathError, TransferError
from tdxstore.store import base32
from tdxstore.store._refscan import ByteChunk, HashBeside
from tdxstore.store.nar import NarDigest, dump_chunks
from tdxstore.store.narparser import restore_from
from tdxstore.store.path import StorePath, make_fixed_output_path, make_text_path
from tdxstore.store.store import Store

_NAR_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_CA = re.compile(r"(fixed:r:|fixed:|text:)sha256:([0-9a-df-np-sv-z]{52})")


def _bad(what: str, code: str = "bundle-malformed") -> TransferError:
    return TransferError(what, hint="the bundle or cache object is corrupt or hostile; make it again",
                         code=code)


@dataclass(frozen=True, slots=True)
class PathRecord:
    """What travels with one path: as the database holds it, plus its signatures."""

    path: StorePath
    nar_hash: str  # sha256:<hex>
    nar_size: int
    references: tuple[StorePath, ...]
    deriver: StorePath | None = None
    ca: str | None = None
    signatures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAR_HASH.fullmatch(self.nar_hash):
            raise _bad(f"{self.path}: NAR hash {self.nar_hash!r} is not sha256:<64 hex digits>")
        if self.nar_size < 16 or self.nar_size > 1 << 50:
            raise _bad(f"{self.path}: NAR size {self.nar_size} is impossible")
        if list(self.references) != sorted(set(self.references)):
            raise _bad(f"{self.path}: references are not sorted and unique")
        if self.ca is not None:
            self._check_content_address(self.ca)

    def _check_content_address(self, ca: str) -> None:
        """A content-addressed path's name is a function of its content: a lying record is caught here."""
        m = _CA.fullmatch(ca)
        if m is None:
            raise _bad(f"{self.path}: unknown content address {ca!r}")
        kind, digest = m.group(1), base32.decode(m.group(2)).hex()
        others = [r for r in self.references if r != self.path]
        try:
            if kind == "text:":
                expect = make_text_path(digest, self.path.name, others)
            else:
                expect = make_fixed_output_path(digest, self.path.name, recursive=kind == "fixed:r:",
                                                references=others, self_ref=self.path in self.references)
        except StorePathError as e:
            raise _bad(f"{self.path}: content address {ca!r} does not fit its references") from e
        if expect != self.path:
            raise _bad(f"{self.path} claims the content address {ca!r}, which names {expect} instead",
                       code="bundle-hash-mismatch")
        if kind == "fixed:r:" and digest != self.nar_hash.removeprefix("sha256:"):
            raise _bad(f"{self.path}: its content address and its NAR hash differ", code="bundle-hash-mismatch")


def record_of(store: Store, sp: StorePath) -> PathRecord:
    info = store.query(sp)
    return PathRecord(sp, info.nar_hash, info.nar_size, tuple(info.references), info.deriver, info.ca,
                      tuple(store.db.signatures(sp.base_name)))


class CheckedDump:
    """Sends a store path's NAR to a sink while a worker hashes it; a path that no longer matches its
    registration is refused (code "export-corrupt-path") once its bytes have passed, not sent as good.

    The sink gets the dumper's own buffers (`nar.dump_chunks`) and must be done with a chunk when it
    returns (zstd's stream writer is). One worker serves every path of a `with` block.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._hasher = HashBeside(hashlib.sha256(), "dump-hash")

    def __enter__(self) -> CheckedDump:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hasher.close()  # no worker outlives the block, whatever happened

    def __call__(self, record: PathRecord, sink: Callable[[ByteChunk], object], *, what: str) -> int:
        """Dump `record.path` to `sink`; `what` names what a refusal leaves incomplete ("the bundle")."""
        h = hashlib.sha256()
        self._hasher.restart(h)
        hasher = self._hasher

        def both(chunk: ByteChunk) -> None:
            hasher(chunk)  # the worker hashes it while the sink takes it
            sink(chunk)

        size = dump_chunks(self._store.real_path(record.path), both)
        hasher.finish()
        if f"sha256:{h.hexdigest()}" != record.nar_hash or size != record.nar_size:
            raise TransferError(f"{record.path} no longer matches its registered NAR hash; {what} is incomplete",
                                hint="run `tdx store verify` and rebuild or re-add that path",
                                code="export-corrupt-path")
        return size


def dependency_order(store: Store, paths: Iterable[StorePath]) -> list[StorePath]:
    """The closure of `paths`, every path after its references (ties by base name: deterministic)."""
    closure = store.closure(paths)
    refs = {p: [r for r in store.references(p) if r != p] for p in closure}
    order: list[StorePath] = []
    done: set[StorePath] = set()
    for start in sorted(closure):
        stack: list[tuple[StorePath, int]] = [(start, 0)]
        while stack:
            node, i = stack.pop()
            if node in done:
                continue
            if i < len(refs[node]):
                stack.append((node, i + 1))
                child = refs[node][i]
                if child not in done:
                    stack.append((child, 0))
                continue
            done.add(node)
            order.append(node)
    return order


def check_arrival_order(store: Store, records: Sequence[PathRecord]) -> None:
    """Refuse duplicates and references that are neither valid here nor delivered earlier (one error)."""
    seen: set[StorePath] = set()
    missing: list[str] = []
    for r in records:
        if r.path in seen:
            raise _bad(f"{r.path} appears twice", code="bundle-duplicate-path")
        for ref in r.references:
            if ref != r.path and ref not in seen and not store.is_valid(ref):
                missing.append(f"{r.path} -> {ref}")
        seen.add(r.path)
    if missing:
        raise TransferError(f"{len(missing)} reference(s) are neither in this store nor delivered before "
                            "their referrer", detail="\n".join(missing), code="bundle-missing-reference",
                            hint="export the whole closure (tdx store export includes it), or import the "
                                 "bundle that holds those paths first")


class NarSource(Protocol):
    """One NAR of a stream: its bytes in chunks, and its SHA-256 once they have all been handed out."""

    def more(self, n: int) -> bytes:
        """The next chunk (b"" after the last one); `n` is what the parser lacks, a hint."""
        ...

    def exhausted(self) -> bool:
        """Whether every byte of the declared size has been handed out."""
        ...

    def hexdigest(self) -> str:
        ...


class _Hashing:
    """Exactly `size` bytes from `read`, hashed as they arrive, in chunks of at most BLOCK; EOF of the
    source is a truncation."""

    BLOCK = 1 << 20

    def __init__(self, read: Callable[[int], bytes], size: int, on_bytes: Callable[[int], None]) -> None:
        self._read = read
        self._h = hashlib.sha256()
        self._left = size
        self._on_bytes = on_bytes

    def more(self, n: int) -> bytes:
        if self._left == 0:
            return b""
        data = self._read(min(self._left, self.BLOCK))
        if not data:
            raise TransferError("the stream ends in the middle of a NAR", code="bundle-truncated",
                                hint="the bundle or download is incomplete; copy it again")
        self._left -= len(data)
        self._h.update(data)
        self._on_bytes(len(data))
        return data

    def exhausted(self) -> bool:
        return self._left == 0

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def stage(record: PathRecord, read: Callable[[int], bytes], dest: Path,
          on_bytes: Callable[[int], None] = lambda _n: None) -> NarDigest:
    """Restore the NAR of `record` from `read` at `dest` (under the store's tmp/), checked and canonical.

    Consumes exactly `record.nar_size` bytes; the tree is removed again on any error.
    """
    return arrive(record, _Hashing(read, record.nar_size, on_bytes), dest)


def arrive(record: PathRecord, source: NarSource, dest: Path) -> NarDigest:
    """Restore the NAR of `record` from `source` at `dest`, created canonical (no second walk), and
    check its size and hash; the tree is removed again on any error."""
    try:
        leftover = restore_from(source.more, dest, canonical=True)
    except NarError as e:
        if source.exhausted() and "truncated" in e.message:
            raise _bad(f"{record.path}: the NAR is longer than the {record.nar_size} bytes declared",
                       code="bundle-size-mismatch") from e
        raise _bad(f"{record.path}: {e.message}", code="bundle-nar-malformed") from e
    if leftover or source.more(1) or not source.exhausted():
        remove_tree(dest)
        raise _bad(f"{record.path}: the NAR is shorter than the {record.nar_size} bytes declared",
                   code="bundle-size-mismatch")
    got = f"sha256:{source.hexdigest()}"
    if got != record.nar_hash:
        remove_tree(dest)
        raise _bad(f"{record.path}: NAR hash mismatch: declared {record.nar_hash}, got {got}",
                   code="bundle-hash-mismatch")
    return NarDigest(bytes.fromhex(got.removeprefix("sha256:")), record.nar_size)


def register(store: Store, record: PathRecord, staged: Path, digest: NarDigest) -> bool:
    """Rename a staged, checked tree into place and register it with its metadata (False: was valid)."""
    with store.path_locks([record.path]):
        if store.is_valid(record.path):
            return False
        store.install(staged, record.path, references=record.references, deriver=record.deriver,
                      ca=record.ca, digest=digest, signatures=record.signatures)
    return True

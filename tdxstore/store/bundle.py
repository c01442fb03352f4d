"""The bundle format (`tdx store export/import`): a closure of store paths in one zstd stream (L3).

Decompressed, a bundle is (docs/store.md has the full description):

    bundle = MAGIC u64le(len(header)) header { nar } END      (then the end of the stream)
    header = canonical CBOR {"version": 1, "storeDir": "/tdx/store", "paths": [record…]}
    record = {"path": base name, "narHash": "sha256:<hex>", "narSize": uint, "references": [base name…],
              "deriver"?: base name, "ca"?: str, "signatures"?: [str]}

Records come in dependency order (references first), one NAR per record, exactly `narSize` bytes.
Export and import stream: memory holds the header and a few chunks. Import stages and checks every NAR
before it registers any path, so a corrupt, truncated or lying bundle leaves the store as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import cbor2
import zstandard

from tdxstore.errors import StorePathError, TransferError
from tdxstore.store._refscan import ByteChunk
from tdxstore.store.path import STORE_DIR, StorePath
from tdxstore.store.store import Store
from tdxstore.store.transfer import (
    CheckedDump,
    PathRecord,
    arrive,
    check_arrival_order,
    dependency_order,
    record_of,
    register,
)

if TYPE_CHECKING:  # (realise pulls in the fetchers and requests, signing cryptography: about 0.1 s that
    # `tdx store import` of an unsigned bundle does not need; they are imported where they are used)
    from tdxstore.store.derivation import Derivation
    from tdxstore.store.signing import PublicKey

VERSION = 1
MAGIC = b"tdx-store-bundle"
END = b"tdx-bundle-end\0\0"
MAX_HEADER = 64 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_THREADS = -1  # zstd workers: one per CPU (any count >= 1 writes the same bytes)
_REQUIRED = {"path", "narHash", "narSize", "references"}
_OPTIONAL = {"deriver", "ca", "signatures"}

#: progress(bytes done, bytes total, paths done, paths total)
Progress = Callable[[int, int, int, int], None]


def _bad(what: str, code: str = "bundle-malformed") -> TransferError:
    return TransferError(f"not a valid tdx bundle: {what}", code=code,
                         hint="the file is not a bundle, or it is corrupt; export it again")


@dataclass(frozen=True, slots=True)
class Summary:
    """What an export wrote or an import did."""

    paths: int
    nar_bytes: int
    added: tuple[StorePath, ...] = ()
    skipped: int = 0


# -- the header ------------------------------------------------------------------------------------

def encode_header(records: Sequence[PathRecord]) -> bytes:
    entries = []
    for r in records:
        e: dict[str, Any] = {"path": r.path.base_name, "narHash": r.nar_hash, "narSize": r.nar_size,
                             "references": [x.base_name for x in r.references]}
        if r.deriver is not None:
            e["deriver"] = r.deriver.base_name
        if r.ca is not None:
            e["ca"] = r.ca
        if r.signatures:
            e["signatures"] = sorted(r.signatures)
        entries.append(e)
    return bytes(cbor2.dumps({"version": VERSION, "storeDir": STORE_DIR, "paths": entries}, canonical=True))


def decode_header(data: bytes) -> list[PathRecord]:
    try:
        top = cbor2.loads(data)
    except Exception as e:  # cbor2 raises several types for malformed input
        raise _bad(f"the header is not CBOR ({e})") from e
    if not isinstance(top, dict) or not isinstance(top.get("version"), int):
        raise _bad("the header has no format version")
    if top["version"] > VERSION:
        raise TransferError(f"the bundle has format version {top['version']}, newer than this tdx reads "
                            f"({VERSION})", hint="upgrade tdx-vm-sdk on this machine", code="bundle-too-new")
    if set(top) != {"version", "storeDir", "paths"} or top["version"] != VERSION:
        raise _bad(f"unexpected header fields {sorted(map(str, top))}")
    if top["storeDir"] != STORE_DIR:
        raise _bad(f"it holds paths of the store {top['storeDir']!r}, not {STORE_DIR!r}", code="bundle-store-dir")
    if not isinstance(top["paths"], list):
        raise _bad("'paths' is not a list")
    if bytes(cbor2.dumps(top, canonical=True)) != data:
        raise _bad("the header is not canonical CBOR")
    return [_record(e) for e in top["paths"]]


def _record(e: object) -> PathRecord:
    if not isinstance(e, dict) or not set(e) >= _REQUIRED or not set(e) <= _REQUIRED | _OPTIONAL:
        raise _bad(f"a path record has the fields {sorted(map(str, e)) if isinstance(e, dict) else e!r}")
    try:
        refs = e["references"]
        sigs = e.get("signatures", [])
        if not isinstance(refs, list) or not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
            raise _bad(f"{e['path']!r}: references and signatures must be lists of strings")
        if not isinstance(e["narSize"], int) or not isinstance(e["narHash"], str):
            raise _bad(f"{e['path']!r}: narSize must be an integer and narHash a string")
        if "ca" in e and not isinstance(e["ca"], str):
            raise _bad(f"{e['path']!r}: ca must be a string")
        return PathRecord(StorePath.from_base_name(e["path"]), e["narHash"], e["narSize"],
                          tuple(StorePath.from_base_name(r) for r in refs),
                          StorePath.from_base_name(e["deriver"]) if "deriver" in e else None,
                          e.get("ca"), tuple(sigs))
    except (StorePathError, TypeError, AttributeError) as err:
        raise _bad(f"a path record names an invalid store path ({err})") from err


# -- export ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selection:
    """The roots an export starts from, and the derivation outputs it cannot carry (not valid here)."""

    roots: tuple[StorePath, ...]
    missing: tuple[StorePath, ...] = ()


def select(store: Store, paths: Sequence[StorePath], derivations: Sequence[Derivation] = (), *,
           outputs_only: bool = False) -> Selection:
    """What to export for `paths` and `derivations`: a `.drv` (given as a path too) means "rebuild it".

    For a derivation: its `.drv` closure, and every valid output of every derivation in it (fetched
    sources, toolchains, build roots, the pinned mkosi and its tools tree, the image itself), so an
    import can rebuild or look up the target offline. `outputs_only`: just the targets' outputs.
    """
    # here, not at the top: realise imports fetch and requests (0.1 s), which no export of paths needs
    from tdxstore.store.realise import closure_of, instantiate, load_derivation

    drvs = list(derivations)
    roots: list[StorePath] = []
    for p in paths:
        if p.is_derivation:
            drvs.append(load_derivation(store, p))
        else:
            store.query(p)  # a path that is not valid is one clear error
            roots.append(p)
    missing: list[StorePath] = []
    if outputs_only:
        for d in drvs:
            for o in d.output_paths.values():
                (roots if store.is_valid(o) else missing).append(o)
        return Selection(tuple(roots), tuple(missing))
    if drvs:
        instantiate(store, drvs)
    for d in closure_of(drvs):
        roots.append(d.drv_path)
        for o in d.output_paths.values():
            (roots if store.is_valid(o) else missing).append(o)
    return Selection(tuple(dict.fromkeys(roots)), tuple(missing))


def export_bundle(store: Store, roots: Sequence[StorePath], out: BinaryIO, *,
                  progress: Progress | None = None, level: int = 3) -> Summary:
    """Write the closure of `roots` to `out` as one bundle; each NAR is checked against the database.

    Three things run at once: this thread walks the store and hands the NAR bytes over without a
    copy (the C dumper, through `CheckedDump`), a worker hashes each chunk while zstd's stream writer
    copies it in (the GIL is released for all three), and zstd's own workers compress. `threads=-1`
    is zstd's multi-threaded framing: its output depends on the level and the bytes, not on how they
    are cut into writes or on the number of workers (`test_export_bytes_do_not_depend_on_batching_or_workers`).
    """
    records = [record_of(store, p) for p in dependency_order(store, roots)]
    total = sum(r.nar_size for r in records)
    notify = progress or (lambda _b, _t, _p, _n: None)
    state = {"done": 0, "path": 0}
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=ZSTD_THREADS)
    with CheckedDump(store) as dump, cctx.stream_writer(out, closefd=False) as z:

        def write(chunk: ByteChunk) -> None:
            z.write(chunk)
            state["done"] += len(chunk)
            notify(state["done"], total, state["path"], len(records))

        header = encode_header(records)
        z.write(MAGIC + len(header).to_bytes(8, "little") + header)
        for i, r in enumerate(records):
            state["path"] = i
            dump(r, write, what="the bundle")
        z.write(END)
    notify(total, total, len(records), len(records))
    return Summary(len(records), total)


# -- import ----------------------------------------------------------------------------------------

class _Source:
    """The decompressed stream: exact reads, zstd errors (checksum, garbage) as one TransferError."""

    def __init__(self, raw: BinaryIO) -> None:
        first = raw.read(4)
        if first != ZSTD_MAGIC:
            raise _bad("it does not start with a zstd frame (wrong magic)", code="bundle-bad-magic")
        self._first = first
        self._raw = raw
        self._reader = zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, self), read_across_frames=True)

    def read(self, n: int = -1) -> bytes:  # the compressed side, for zstandard
        if self._first:
            data, self._first = self._first, b""
            return data
        return self._raw.read(n)

    def take(self, n: int) -> bytes:
        try:
            return self._reader.read(n)
        except zstandard.ZstdError as e:
            raise _bad(f"the compressed stream is corrupt ({e})", code="bundle-corrupt") from e

    def exact(self, n: int, what: str) -> bytes:
        parts, got = [], 0
        while got < n:
            data = self.take(n - got)
            if not data:
                raise _bad(f"the stream ends inside {what}", code="bundle-truncated")
            parts.append(data)
            got += len(data)
        return b"".join(parts)


def read_header(src: _Source) -> list[PathRecord]:
    if src.exact(len(MAGIC), "the magic") != MAGIC:
        raise _bad("the decompressed stream does not start with 'tdx-store-bundle'", code="bundle-bad-magic")
    size = int.from_bytes(src.exact(8, "the header length"), "little")
    if size > MAX_HEADER:
        raise _bad(f"a header of {size} bytes exceeds the limit of {MAX_HEADER}")
    return decode_header(src.exact(size, "the header"))


def import_bundle(store: Store, raw: BinaryIO, *, trusted: Sequence[PublicKey] | None = None,
                  progress: Progress | None = None) -> Summary:
    """Check, stage and register every path of a bundle; with `trusted`, every new path must be signed.

    Nothing is registered until the whole stream has been read and every NAR matched its record.
    The stream is decompressed and each NAR hashed on a thread of its own (`_Inflater`), ahead of the
    parser that creates its files here.
    """
    src = _Source(raw)
    records = read_header(src)
    check_arrival_order(store, records)
    new = [r for r in records if not store.is_valid(r.path)]
    if trusted is not None:
        from tdxstore.store.signing import require_signatures

        require_signatures(new, trusted, "the bundle")
    total = sum(r.nar_size for r in records)
    notify = progress or (lambda _b, _t, _p, _n: None)
    wanted = {r.path for r in new}
    with store.gc_guard(), store.temp_dir("import") as tmp, _Inflater(src, records, wanted) as inflater:
        staged = []
        for i, r in enumerate(records):
            notify(inflater.done, total, i, len(records))
            if r.path in wanted:
                dest = tmp / f"{i}"
                staged.append((r, dest, arrive(r, inflater.nar(), dest)))
            else:
                inflater.skipped()
        inflater.finish()
        added = [r.path for r, dest, digest in staged if register(store, r, dest, digest)]
    notify(total, total, len(records), len(records))
    return Summary(len(records), total, tuple(added), len(records) - len(added))


@dataclass(frozen=True, slots=True)
class _End:
    """After the chunks of a NAR: its SHA-256 (None for a path that is skipped, not hashed)."""

    hexdigest: str | None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_DONE = _End(None)


class _Inflater:
    """Decompresses the NARs after the header and hashes each wanted one, on a thread of its own.

    zstd and hashlib drop the GIL on large buffers, so this runs beside the parser. The thread hands
    over chunks of at most CHUNK bytes, each within one NAR, through a bounded queue (memory stays at
    a few chunks whatever the stream expands to); an error is queued in its place in the stream and
    raised by the reader. Leaving the context stops the thread and joins it, whatever happened.
    """

    CHUNK = 4 << 20
    DEPTH = 8

    def __init__(self, src: _Source, records: Sequence[PathRecord], wanted: set[StorePath]) -> None:
        import queue
        import threading

        self._src = src
        self._todo = [(r.nar_size, r.path in wanted) for r in records]
        self._queue: queue.Queue[bytes | _End | _Failed] = queue.Queue(maxsize=self.DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="import-inflate", daemon=True)
        self.taken = 0  # bytes of wanted NARs handed to the reader
        self._dropped = 0  # bytes of skipped NARs (counted by the thread)

    @property
    def done(self) -> int:
        """Decompressed NAR bytes so far, for progress."""
        return self.taken + self._dropped

    def __enter__(self) -> _Inflater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import queue

        self._stop.set()
        while self._thread.is_alive():  # it may be waiting for room in the queue: make some
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    # -- the thread ------------------------------------------------------------------------------

    def _put(self, item: bytes | _End | _Failed) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import hashlib

        try:
            for size, wanted in self._todo:
                h = hashlib.sha256() if wanted else None
                left = size
                while left:
                    data = self._src.take(min(left, self.CHUNK))
                    if not data:
                        raise _bad("the stream ends inside a NAR", code="bundle-truncated")
                    left -= len(data)
                    if h is None:
                        self._dropped += len(data)
                        continue
                    h.update(data)
                    if not self._put(data):
                        return
                if not self._put(_End(h.hexdigest() if h is not None else None)):
                    return
            if self._src.exact(len(END), "the end marker") != END or self._src.take(1):
                raise _bad("the stream does not end with the end marker after the last NAR")
            self._put(_DONE)
        except BaseException as e:  # handed to the reader, which raises it in its own thread
            self._put(_Failed(e))

    # -- the reader ------------------------------------------------------------------------------

    def _get(self) -> bytes | _End:
        item = self._queue.get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    def nar(self) -> _QueuedNar:
        """The next NAR, which must be a wanted one."""
        return _QueuedNar(self)

    def skipped(self) -> None:
        """Pass over the next NAR, which is not wanted (the thread has decompressed and dropped it)."""
        self._get()

    def finish(self) -> None:
        """Wait for the thread's check of the end marker and the end of the stream."""
        self._get()


class _QueuedNar:
    """A `transfer.NarSource` over the inflater's queue: one NAR's chunks, then its hash."""

    __slots__ = ("_digest", "_inflater")

    def __init__(self, inflater: _Inflater) -> None:
        self._inflater = inflater
        self._digest: str | None = None

    def more(self, n: int) -> bytes:
        if self._digest is not None:
            return b""
        item = self._inflater._get()
        if isinstance(item, _End):
            self._digest = item.hexdigest or ""
            return b""
        self._inflater.taken += len(item)
        return item

    def exhausted(self) -> bool:
        return self._digest is not None

    def hexdigest(self) -> str:
        assert self._digest is not None
        return self._digest

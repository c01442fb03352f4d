"""Binary caches on `file://`, `http(s)://` and `s3://`: Nix's layout, push and substitution (L3).

A cache is a directory of immutable objects: `nix-cache-info`, `<hash part>.narinfo` (the path's
record, text, signed) and `nar/<base-32 SHA-256 of the file>.nar.zst`. Push writes the NAR object
before the narinfo, so a reader never sees a record without its NAR. Substitution trusts nothing it
reads: the narinfo's signature must verify with a trusted key, the file and NAR hashes are checked
while the object streams into `tmp/` (`transfer.stage`), and a cache that fails once is skipped for
the rest of the run (one timeout per run, never one per path).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import zstandard

from tdxstore.errors import StorePathError, TransferError
from tdxstore.store import base32
from tdxstore.store.cache_backends import Cache, CacheDown, FileCache, open_cache
from tdxstore.store.path import STORE_DIR, StorePath
from tdxstore.store.settings import Settings
from tdxstore.store.signing import PublicKey, trusted_by
from tdxstore.store.store import Store
from tdxstore.store.transfer import CheckedDump, PathRecord, dependency_order, record_of, register, stage

__all__ = ["Cache", "CacheDown", "CacheSummary", "NarInfo", "PushReport", "Substituters", "open_cache",
           "parse_narinfo", "push", "substituters_from", "summary"]
log = logging.getLogger(__name__)
CACHE_INFO = f"StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: 40\n"
_CHUNK = 1 << 20


# -- narinfo ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NarInfo:
    record: PathRecord
    url: str  # relative to the cache root: nar/<filehash>.nar.zst
    file_hash: str  # sha256:<base32>
    file_size: int

    def __post_init__(self) -> None:
        if not self.url.startswith("nar/") or "/" in self.url[4:] or ".." in self.url:
            raise TransferError(f"narinfo of {self.record.path} names the object {self.url!r} outside nar/",
                                code="cache-object-malformed")

    def render(self) -> str:
        r = self.record
        lines = [f"StorePath: {r.path.logical}", f"URL: {self.url}", "Compression: zstd",
                 f"FileHash: {self.file_hash}", f"FileSize: {self.file_size}",
                 f"NarHash: sha256:{base32.encode(bytes.fromhex(r.nar_hash[7:]))}", f"NarSize: {r.nar_size}",
                 f"References: {' '.join(x.base_name for x in r.references)}"]
        if r.deriver:
            lines.append(f"Deriver: {r.deriver.base_name}")
        if r.ca:
            lines.append(f"CA: {r.ca}")
        lines += [f"Sig: {s}" for s in sorted(r.signatures)]
        return "\n".join(lines) + "\n"


def parse_narinfo(text: str, where: str) -> NarInfo:
    fields: dict[str, str] = {}
    sigs: list[str] = []
    try:
        for line in text.splitlines():
            key, sep, value = line.partition(": ")
            if not sep:
                raise ValueError(f"line {line[:60]!r} is not 'Key: value'")
            if key == "Sig":
                sigs.append(value)
            elif key in fields:
                raise ValueError(f"{key} appears twice")
            else:
                fields[key] = value
        if fields.get("Compression") != "zstd":
            raise ValueError(f"compression {fields.get('Compression')!r} is not zstd")
        nar = fields["NarHash"].removeprefix("sha256:")
        record = PathRecord(
            StorePath.parse(fields["StorePath"]), f"sha256:{base32.decode(nar).hex()}", int(fields["NarSize"]),
            tuple(sorted(StorePath.from_base_name(b) for b in fields["References"].split())),
            StorePath.from_base_name(fields["Deriver"]) if fields.get("Deriver") else None,
            fields.get("CA"), tuple(sigs))
        return NarInfo(record, fields["URL"], fields["FileHash"], int(fields["FileSize"]))
    except (KeyError, ValueError, StorePathError) as e:
        raise TransferError(f"{where} is not a valid narinfo: {e}", code="cache-object-malformed",
                            hint="the cache holds a damaged or hostile object; push the path again") from e


# -- push ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PushReport:
    pushed: int
    present: int
    bytes: int


def push(store: Store, cache: Cache, paths: Sequence[StorePath]) -> PushReport:
    """Push the closures of `paths` (references first); paths whose narinfo exists are skipped.

    Each NAR is checked against its registered hash as it is compressed: a path damaged in the store
    is refused before its objects are put, never published with a NarHash it does not have.
    """
    pushed = present = total = 0
    try:
        if cache.get("nix-cache-info") is None:
            cache.put("nix-cache-info", CACHE_INFO.encode())
        with CheckedDump(store) as dump:  # one hash worker for every path
            for sp in dependency_order(store, paths):
                if cache.get(f"{sp.hash_part}.narinfo") is not None:
                    present += 1
                    continue
                record = record_of(store, sp)
                with store.temp_dir("push") as tmp:
                    obj, file_hash, size = _compress(dump, record, tmp / "nar.zst")
                    url = f"nar/{file_hash}.nar.zst"
                    cache.put(url, obj)
                    cache.put(f"{sp.hash_part}.narinfo",
                              NarInfo(record, url, f"sha256:{file_hash}", size).render().encode())
                pushed += 1
                total += size
    except CacheDown as e:
        raise TransferError(f"the cache {cache.url} is unreachable: {e}", code="cache-unreachable",
                            hint="check the URL and that the server runs") from e
    return PushReport(pushed, present, total)


def _compress(dump: CheckedDump, record: PathRecord, dest: Path) -> tuple[Path, str, int]:
    """The path's NAR, checked and zstd-compressed into `dest`; (dest, base-32 SHA-256 of the file, its size)."""
    file_hash = hashlib.sha256()
    size = 0

    class _Out:
        def write(self, data: bytes) -> int:
            nonlocal size
            file_hash.update(data)
            size += len(data)
            return f.write(data)

    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with open(dest, "wb") as f, cctx.stream_writer(cast(IO[bytes], _Out()), closefd=False) as z:
        dump(record, z.write, what="the push of this path")  # zstd copies each chunk in before it returns
    return dest, base32.encode(file_hash.digest()), size


@dataclass(frozen=True, slots=True)
class CacheSummary:
    paths: int
    nar_bytes: int
    file_bytes: int


def summary(cache: Cache) -> CacheSummary | None:
    """How many paths a cache lists and their sizes (None where the backend cannot list, as plain HTTP)."""
    try:
        names = cache.names()
        if names is None:
            return None
        paths = nar = size = 0
        for name in sorted(names):
            data = cache.get(name)
            if data is None:
                continue
            info = parse_narinfo(data.decode(errors="replace"), f"{cache.url}/{name}")
            paths, nar, size = paths + 1, nar + info.record.nar_size, size + info.file_size
    except CacheDown as e:
        raise TransferError(f"the cache {cache.url} is unreachable: {e}", code="cache-unreachable",
                            hint="check the URL, that the server runs, and (s3://) the AWS credentials") from e
    return CacheSummary(paths, nar, size)


# -- substitution ----------------------------------------------------------------------------------

Notify = Callable[[str], None]


@dataclass
class Substituters:
    """The configured caches of one run, in order, and which of them are down."""

    caches: list[Cache]
    trusted: tuple[PublicKey, ...]
    notify: Notify = lambda _m: None
    down: set[str] = field(default_factory=set)

    def live(self) -> Iterator[Cache]:
        return (c for c in self.caches if c.url not in self.down)

    def _mark_down(self, cache: Cache, why: object) -> None:
        self.down.add(cache.url)
        self.notify(f"warning: the cache {cache.url} is unreachable ({why}); not asked again in this run, "
                    "building instead")

    def lookup(self, sp: StorePath) -> tuple[Cache, NarInfo] | None:
        """The first cache with a trusted narinfo for `sp` (an untrusted one is refused and reported)."""
        for cache in list(self.live()):
            try:
                data = cache.get(f"{sp.hash_part}.narinfo")
            except CacheDown as e:
                self._mark_down(cache, e)
                continue
            if data is None:
                continue
            try:
                info = parse_narinfo(data.decode(errors="replace"), f"{cache.url}/{sp.hash_part}.narinfo")
            except TransferError as e:
                self.notify(f"warning: {e.message}; not used")
                continue
            if info.record.path != sp:
                self.notify(f"warning: {cache.url} answers for {sp} with {info.record.path}; not used")
            elif not trusted_by(info.record, self.trusted):
                self.notify(f"warning: {cache.url} holds {sp}, but no trusted key signed it; not used")
            else:
                return cache, info
        return None

    def substitute(self, store: Store, sp: StorePath) -> bool:
        """Make `sp` and its references valid from the caches; False when any of them is not to be had."""
        if store.is_valid(sp):
            return True
        found = self.lookup(sp)
        if found is None:
            return False
        cache, info = found
        for ref in info.record.references:
            if ref != sp and not self.substitute(store, ref):
                return False
        try:
            return self._fetch(store, cache, info)
        except CacheDown as e:
            self._mark_down(cache, e)
        except TransferError as e:
            self.notify(f"warning: {cache.url}: {e.message}; not used")
        return False

    def _fetch(self, store: Store, cache: Cache, info: NarInfo) -> bool:
        file_hash = hashlib.sha256()

        class _Hashed:
            def __init__(self, raw: IO[bytes]) -> None:
                self.raw = raw

            def read(self, n: int = -1) -> bytes:
                data = self.raw.read(n if n > 0 else _CHUNK)
                file_hash.update(data)
                return data

        with store.gc_guard(), store.temp_dir("substitute") as tmp, cache.stream(info.url) as raw:
            hashed = _Hashed(raw)
            reader = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], hashed), read_across_frames=True)
            try:
                digest = stage(info.record, reader.read, tmp / "out")
                rest = reader.read(1)
            except zstandard.ZstdError as e:
                raise TransferError(f"the object {info.url} is corrupt ({e})", code="cache-object-corrupt") from e
            while hashed.read(_CHUNK):  # the file hash covers the whole object
                pass
            if rest or f"sha256:{base32.encode(file_hash.digest())}" != info.file_hash:
                raise TransferError(f"the object {info.url} does not match its FileHash", code="cache-object-corrupt")
            register(store, info.record, tmp / "out", digest)
        self.notify(f"substituted {info.record.path} from {cache.url}")
        return True


def substituters_from(settings: Settings, *, offline: bool, notify: Notify) -> Substituters | None:
    """The configured caches for one run (offline: only `file://` ones); None when there are none."""
    caches = [open_cache(u, settings.cache_timeout) for u in settings.substituters]
    if offline:
        caches = [c for c in caches if isinstance(c, FileCache)]
    return Substituters(caches, settings.trusted_keys, notify) if caches else None

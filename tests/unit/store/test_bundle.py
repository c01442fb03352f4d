"""Bundles: round trip between two real stores, the golden format, and a corpus of hostile bundles,
each refused with one error while the store stays exactly as it was (listing and verify)."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
import zstandard

from tdxstore.errors import NarError, TransferError
from tdxstore.store import bundle
from tdxstore.store.bundle import END, MAGIC, decode_header, encode_header, export_bundle, import_bundle, select
from tdxstore.store.path import StorePath
from tdxstore.store.signing import SecretKey
from tdxstore.store.store import Store
from tdxstore.store.transfer import record_of
from tdxstore.store.verify import verify_store

DATA = Path(__file__).parents[2] / "data" / "bundle"


def _tree(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    root = tmp / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _closure(store: Store, tmp: Path) -> tuple[StorePath, StorePath, StorePath]:
    """lib <- app (mentions lib) <- top (mentions app): a closure of three, known bytes."""
    lib = store.add_path(_tree(tmp, "lib", {"lib.so": b"\x7fELF library\n", "doc/README": b"read me\n"}), "lib")
    app = store.add_path(_tree(tmp, "app", {"bin/app": f"#!/bin/sh\nexec {lib.logical}/lib.so\n".encode()}),
                         "app", references=[lib])
    os.chmod(store.real_path(app) / "bin", 0o755)  # (content stays canonical: the NAR is unchanged)
    top = store.add_path(_tree(tmp, "top", {"etc/conf": f"app={app.logical}\n".encode()}), "top",
                         references=[app])
    return lib, app, top


def _export(store: Store, roots: list[StorePath]) -> bytes:
    out = io.BytesIO()
    export_bundle(store, roots, out)
    return out.getvalue()


def _state(store: Store) -> tuple[list[str], list[str]]:
    report = verify_store(store)
    assert not report.missing and not report.corrupted and not report.garbage
    return store.db.all_paths(), sorted(os.listdir(store.root))


@pytest.fixture
def source(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "a")


@pytest.fixture
def target(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "b")


def test_round_trip_keeps_metadata_and_order(source: Store, target: Store, tmp_path: Path, nar_impl: str) -> None:
    lib, app, top = _closure(source, tmp_path)
    data = _export(source, [top])
    summary = import_bundle(target, io.BytesIO(data))
    assert summary.added == (lib, app, top)  # references first
    for sp in (lib, app, top):
        a, b = source.query(sp), target.query(sp)
        assert (a.nar_hash, a.nar_size, a.references, a.ca, a.deriver) == \
               (b.nar_hash, b.nar_size, b.references, b.ca, b.deriver)
    _state(target)
    again = import_bundle(target, io.BytesIO(data))  # already valid: skipped, nothing changes
    assert again.added == () and again.skipped == 3


def test_golden_decompressed_bundle(source: Store, tmp_path: Path) -> None:
    """The whole decompressed stream of a fixed closure: magic, header length, CBOR header, NARs, end."""
    _lib, _app, top = _closure(source, tmp_path)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(_export(source, [top]))).read()
    golden = DATA / "three-paths.bundle"
    if os.environ.get("TDX_UPDATE_GOLDEN"):
        golden.write_bytes(plain)
    assert plain == golden.read_bytes()
    size = int.from_bytes(plain[16:24], "little")
    header = cbor2.loads(plain[24:24 + size])
    assert header["version"] == 1 and header["storeDir"] == "/tdx/store"
    assert [p["path"].split("-", 1)[1] for p in header["paths"]] == ["lib", "app", "top"]
    assert plain.startswith(MAGIC) and plain.endswith(END)
    described = DATA / "three-paths.header.txt"
    if os.environ.get("TDX_UPDATE_GOLDEN"):
        described.write_text(_describe(header))
    assert described.read_text() == _describe(header)


def _describe(header: dict[str, object]) -> str:
    """A readable rendering of the golden header, reviewed by hand (docs/store.md shows it)."""
    lines = [f"version {header['version']} storeDir {header['storeDir']}"]
    for p in header["paths"]:  # type: ignore[attr-defined]
        lines.append(" ".join(f"{k}={v}" for k, v in sorted(p.items())))
    return "\n".join(lines) + "\n"


def test_header_codec_is_canonical_and_strict(source: Store, tmp_path: Path) -> None:
    lib, app, top = _closure(source, tmp_path)
    records = [record_of(source, p) for p in (lib, app, top)]
    data = encode_header(records)
    assert decode_header(data) == records
    noncanonical = cbor2.dumps(cbor2.loads(data))  # same content, keys not in canonical order
    if noncanonical != data:
        with pytest.raises(TransferError, match="canonical"):
            decode_header(noncanonical)


# -- hostile bundles ---------------------------------------------------------------------------------

def _recompress(plain: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(plain)


def _plain(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def _with_header(data: bytes, edit: Callable[[dict[str, object]], None], nar_edit: Callable[[bytes], bytes] = bytes
                 ) -> bytes:
    plain = _plain(data)
    size = int.from_bytes(plain[16:24], "little")
    header = cbor2.loads(plain[24:24 + size])
    edit(header)
    new = cbor2.dumps(header, canonical=True)
    return _recompress(MAGIC + len(new).to_bytes(8, "little") + new + nar_edit(plain[24 + size:]))


def _flip_last_nar_byte(plain_tail: bytes) -> bytes:
    b = bytearray(plain_tail)
    b[plain_tail.rindex(b"app=/tdx/store/") + 1] ^= 0x01  # inside the last NAR's file contents
    return bytes(b)


def _traversal(h: dict[str, object]) -> None:
    pass  # the NAR itself is replaced below


HOSTILE: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("truncated", lambda d: d[: len(d) // 2], "bundle-truncated"),
    ("truncated-at-end", lambda d: _recompress(_plain(d)[:-len(END)]), "bundle-truncated"),
    ("flipped-compressed-byte", lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], "bundle-"),
    ("flipped-nar-byte", lambda d: _with_header(d, lambda h: None, _flip_last_nar_byte), "bundle-hash-mismatch"),
    ("wrong-magic", lambda d: b"PK\x03\x04" + d[4:], "bundle-bad-magic"),
    ("wrong-inner-magic", lambda d: _recompress(b"X" + _plain(d)[1:]), "bundle-bad-magic"),
    ("not-a-bundle", lambda d: _recompress(b"hello world, this is not a bundle at all"), "bundle-"),
    ("missing-reference", lambda d: _with_header(d, lambda h: h["paths"].pop(0),  # type: ignore[attr-defined]
                                                  lambda t: t), "bundle-missing-reference"),
    ("newer-version", lambda d: _with_header(d, lambda h: h.update(version=2)), "bundle-too-new"),
    ("duplicate-path", lambda d: _with_header(d, lambda h: h["paths"].append(h["paths"][-1])),  # type: ignore
     "bundle-duplicate-path"),
    ("lying-size", lambda d: _with_header(d, lambda h: h["paths"][0].update(  # type: ignore[index]
        narSize=h["paths"][0]["narSize"] - 8)), "bundle-"),  # type: ignore[index]
    ("lying-hash", lambda d: _with_header(d, lambda h: h["paths"][2].update(  # type: ignore[index]
        narHash="sha256:" + "0" * 64)), "bundle-hash-mismatch"),
    ("lying-content-address", lambda d: _with_header(d, lambda h: h["paths"][0].update(  # type: ignore[index]
        path="0" * 32 + "-lib")), "bundle-hash-mismatch"),
    ("other-store-dir", lambda d: _with_header(d, lambda h: h.update(storeDir="/nix/store")), "bundle-store-dir"),
    ("unknown-field", lambda d: _with_header(d, lambda h: h.update(extra=1)), "bundle-malformed"),
    ("trailing-garbage", lambda d: d + _recompress(b"more"), "bundle-malformed"),
    ("empty", lambda d: b"", "bundle-bad-magic"),
]


@pytest.mark.parametrize(("name", "mangle", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bundle_is_refused_and_store_unchanged(source: Store, target: Store, tmp_path: Path, name: str,
                                                       mangle: Callable[[bytes], bytes], code: str,
                                                       nar_impl: str) -> None:
    _lib, _app, top = _closure(source, tmp_path)
    target.add_bytes("already-here", b"unrelated\n")
    before = _state(target)
    with pytest.raises(TransferError) as err:
        import_bundle(target, io.BytesIO(mangle(_export(source, [top]))))
    assert err.value.code.startswith(code), (err.value.code, err.value.message)
    assert _state(target) == before
    assert os.listdir(target.tmp) == []


def test_path_traversal_in_a_nar_entry_is_refused(source: Store, target: Store, tmp_path: Path,
                                                  nar_impl: str) -> None:
    """A NAR entry named '..' (hash and size made to match, as a hostile sender would)."""
    import hashlib

    sp = source.add_path(_tree(tmp_path, "t", {"ab": b"x"}), "t")
    plain = _plain(_export(source, [sp]))
    size = int.from_bytes(plain[16:24], "little")
    nar = plain[24 + size:-len(END)]
    evil = nar.replace(b"\x02\x00\x00\x00\x00\x00\x00\x00ab\x00\x00\x00\x00\x00\x00",
                       b"\x02\x00\x00\x00\x00\x00\x00\x00..\x00\x00\x00\x00\x00\x00")
    assert evil != nar
    header = cbor2.loads(plain[24:24 + size])
    header["paths"][0].update(narHash=f"sha256:{hashlib.sha256(evil).hexdigest()}")
    del header["paths"][0]["ca"]  # (else the content address gives the lie away first)
    new = cbor2.dumps(header, canonical=True)
    before = _state(target)
    with pytest.raises(TransferError) as err:
        import_bundle(target, io.BytesIO(_recompress(MAGIC + len(new).to_bytes(8, "little") + new + evil + END)))
    assert err.value.code == "bundle-nar-malformed" and "'..'" in err.value.message
    assert _state(target) == before and not (tmp_path / "b" / "ab").exists()


def test_signatures_travel_and_are_required(source: Store, target: Store, tmp_path: Path) -> None:
    lib, app, top = _closure(source, tmp_path)
    key, other = SecretKey.generate("ci-1"), SecretKey.generate("other-1")
    with source.db.transaction() as conn:
        for sp in (lib, app):
            source.db.add_signatures(conn, sp.base_name, [key.sign(record_of(source, sp))])
    data = _export(source, [top])
    with pytest.raises(TransferError) as err:
        import_bundle(target, io.BytesIO(data), trusted=[key.public])
    assert err.value.code == "signature-untrusted" and "1 path(s)" in err.value.message  # top is unsigned
    with pytest.raises(TransferError):
        import_bundle(target, io.BytesIO(data), trusted=[other.public])
    assert target.db.all_paths() == []
    with source.db.transaction() as conn:
        source.db.add_signatures(conn, top.base_name, [key.sign(record_of(source, top))])
    import_bundle(target, io.BytesIO(_export(source, [top])), trusted=[key.public])
    assert target.db.signatures(top.base_name) == source.db.signatures(top.base_name)


def test_select_a_derivation_carries_its_drv_closure_and_outputs(source: Store, tmp_path: Path) -> None:
    import hashlib

    from tdxstore.store.builtins import fetchurl_derivation
    from tdxstore.store.derivation import derivation

    blob = source.add_flat(_tree(tmp_path, "f", {"x.txt": b"data\n"}) / "x.txt", "x.txt")
    fetched = fetchurl_derivation("http://127.0.0.1:9/x.txt", hashlib.sha256(b"data\n").hexdigest(), "x.txt")
    assert fetched.out == blob  # the fetch's output is already valid (same content address)
    top = derivation("top", "/bin/sh", args=["-c", "true"], root=blob, inputs=[fetched])
    sel = select(source, [], [top])
    assert fetched.drv_path in sel.roots and top.drv_path in sel.roots and blob in sel.roots
    assert sel.missing == (top.out,)
    only = select(source, [], [fetched], outputs_only=True)
    assert only.roots == (blob,) and only.missing == ()
    assert bundle.VERSION == 1


def test_cli_export_of_a_tdxfile_then_offline_build_lists_every_download(tmp_path: Path) -> None:
    """A TDXfile whose image was never built here: the bundle carries its .drv closure and sources (the
    missing outputs are warned about), and `tdx build --offline` elsewhere names every download at once."""
    from tests.unit.cli.test_store_cli import REPO, one_error, tdx

    a, b = tmp_path / "a", tmp_path / "b"
    out = tdx(a, "store", "export", str(REPO / "examples" / "minimal"), "-o", str(tmp_path / "m.tdx"))
    assert out.returncode == 0, out.stderr
    assert b"warning: not in this store" in out.stderr and b"-mkosi-config" not in out.stderr
    imported = tdx(b, "store", "import", str(tmp_path / "m.tdx"))
    assert imported.returncode == 0 and b"-minimal-mkosi-config" in imported.stdout, imported.stderr
    assert any(line.endswith(b".drv") for line in imported.stdout.splitlines())
    offline = tdx(b, "build", str(REPO / "examples" / "minimal"), "--offline", "-o", str(tmp_path / "out"))
    msg = one_error(offline)
    assert offline.returncode == 1 and "--offline:" in msg and "would need the network" in msg
    err = offline.stderr.decode()
    assert "builtin:mkosi" in err and ".deb" in err and "running mkosi" not in err
    assert tdx(b, "store", "verify").returncode == 0


def test_export_refuses_a_path_that_no_longer_matches_its_hash(source: Store, tmp_path: Path) -> None:
    """The NAR hash is checked while the bundle is written: a same-size change in the store is caught."""
    lib, _, top = _closure(source, tmp_path)
    victim = source.real_path(lib) / "doc" / "README"
    os.chmod(victim, 0o644)
    victim.write_bytes(b"READ ME\n")
    with pytest.raises(TransferError) as err:
        _export(source, [top])
    assert err.value.code == "export-corrupt-path" and str(lib) in err.value.message
    other = source.add_path(_tree(tmp_path, "other", {"f": b"unrelated\n"}), "other")
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(_export(source, [other]))).read()
    size = int.from_bytes(plain[16:24], "little")
    assert [r.path for r in decode_header(plain[24:24 + size])] == [other]  # the next export works


def _export_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "export-hash"]


def _mixed(source: Store, tmp_path: Path) -> StorePath:
    """Large enough for several of zstd's 8 MiB jobs: streamed random files and many small text files."""
    files = {f"blob{i}": os.urandom(5 << 20) for i in range(3)}
    files.update({f"small/f{i}": f"line {i} key{i % 7} = value{i * 31}\n".encode() * 40 for i in range(2000)})
    return source.add_path(_tree(tmp_path, "mixed", files), "mixed")


def test_export_bytes_do_not_depend_on_batching_or_workers(source: Store, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """zstd's multi-threaded framing: the same bundle bytes whatever the writes' sizes and the workers."""
    from tdxstore.store import nar

    top = _mixed(source, tmp_path)
    first = _export(source, [top])
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(first)).read()
    one = io.BytesIO()  # the whole decompressed bundle in one write, on one worker
    with zstandard.ZstdCompressor(level=3, write_checksum=True, threads=1).stream_writer(one, closefd=False) as z:
        z.write(plain)
    assert first == one.getvalue()
    monkeypatch.setattr(nar, "_FLUSH", 4096)  # other chunk sizes: many small writes, streamed files in 64 KiB
    monkeypatch.setattr(nar, "CHUNK", 1 << 16)
    monkeypatch.setattr(bundle, "ZSTD_THREADS", 1)
    assert _export(source, [top]) == first
    assert not _export_threads()


def test_interrupt_or_a_failing_output_during_export_leaves_no_thread(source: Store, tmp_path: Path) -> None:
    top = _mixed(source, tmp_path)

    def progress(done: int, total: int, paths: int, count: int) -> None:
        if done > 6 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_bundle(source, [top], io.BytesIO(), progress=progress)
    assert not _export_threads()
    with open("/dev/full", "wb", buffering=0) as full, pytest.raises(OSError) as err:
        export_bundle(source, [top], full)
    assert err.value.errno == errno.ENOSPC and not _export_threads()
    small = source.real_path(top) / "small"  # a fifo mid-dump: the dump's own error, once
    os.chmod(small, 0o755)
    os.mkfifo(small / "g-fifo")
    with pytest.raises(NarError) as nerr:
        _export(source, [top])
    assert nerr.value.code == "nar-unsupported-file"
    assert not _export_threads()


# -- the decompressing thread ------------------------------------------------------------------------

def _no_inflater_left() -> bool:
    import threading

    return not any(t.name == "import-inflate" for t in threading.enumerate())


def _big_bundle(source: Store, tmp_path: Path) -> bytes:
    """One path whose NAR spans several of the thread's chunks (random: the compressed stream too)."""
    big = source.add_path(_tree(tmp_path, "big", {"blob": os.urandom(3 * bundle._Inflater.CHUNK + 999),
                                                  "z": b"last\n"}), "big")
    return _export(source, [big])


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8])
def test_a_stream_cut_inside_a_chunk_is_truncated_and_no_thread_is_left(source: Store, target: Store,
                                                                        tmp_path: Path, cut: float,
                                                                        nar_impl: str) -> None:
    data = _big_bundle(source, tmp_path)
    before = _state(target)
    with pytest.raises(TransferError) as err:
        import_bundle(target, io.BytesIO(data[: int(len(data) * cut)]))
    assert err.value.code == "bundle-truncated"
    assert _state(target) == before and os.listdir(target.tmp) == [] and _no_inflater_left()


def test_corruption_found_by_the_thread_late_in_the_stream_is_one_error(source: Store, target: Store,
                                                                        tmp_path: Path) -> None:
    data = bytearray(_big_bundle(source, tmp_path))
    data[len(data) * 3 // 4] ^= 0xFF  # inside a compressed block after the first chunks
    with pytest.raises(TransferError) as err:
        import_bundle(target, io.BytesIO(bytes(data)))
    assert err.value.code.startswith("bundle-"), err.value.code
    assert target.db.all_paths() == [] and os.listdir(target.tmp) == [] and _no_inflater_left()


def test_interrupt_in_the_main_thread_stops_the_thread(source: Store, target: Store, tmp_path: Path) -> None:
    data = _big_bundle(source, tmp_path)
    calls = []

    def progress(done: int, total: int, paths: int, count: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_bundle(target, io.BytesIO(data), progress=progress)
    assert calls and target.db.all_paths() == [] and os.listdir(target.tmp) == [] and _no_inflater_left()


BOMB_SCRIPT = """
import io, sys
from pathlib import Path
from tdxstore.errors import TransferError
from tdxstore.store.bundle import import_bundle
from tdxstore.store.store import Store
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
data = Path(sys.argv[1]).read_bytes()
store = Store.open(Path(sys.argv[2]))
before = hwm()
try:
    import_bundle(store, io.BytesIO(data))
except TransferError as e:
    print(e.code, hwm() - before)
"""


def test_a_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path, nar_impl: str) -> None:
    """A few hundred KiB that expand to a 256 MiB NAR whose declared hash is a lie: the import streams
    it to disk through the bounded queue (peak RSS grows by far less than the NAR), then refuses it."""
    import subprocess
    import sys

    size = 256 << 20
    nar = (_nar_str(b"nix-archive-1") + _nar_str(b"(") + _nar_str(b"type") + _nar_str(b"regular")
           + _nar_str(b"contents") + size.to_bytes(8, "little"))
    tail = _nar_str(b")")
    header = encode_header([_record("0" * 32 + "-bomb", len(nar) + size + len(tail))])
    c = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    parts = [c.compress(MAGIC + len(header).to_bytes(8, "little") + header + nar)]
    zero = bytes(1 << 20)
    parts += [c.compress(zero) for _ in range(size >> 20)]
    parts.append(c.compress(tail + END) + c.flush())
    bomb = tmp_path / "bomb.tdx"
    bomb.write_bytes(b"".join(parts))
    assert bomb.stat().st_size < 1 << 20
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(bomb), str(tmp_path / "b")], check=True,
                         capture_output=True, cwd=Path(__file__).resolve().parents[3], text=True).stdout.split()
    assert out[0] == "bundle-hash-mismatch"
    assert int(out[1]) < 96 * 1024, f"peak RSS grew by {out[1]} KiB for a 256 MiB NAR"
    assert os.listdir(tmp_path / "b" / "tmp") == []


def _nar_str(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b + b"\0" * (-len(b) % 8)


def _record(base: str, nar_size: int) -> bundle.PathRecord:
    return bundle.PathRecord(StorePath.from_base_name(base), "sha256:" + "0" * 64, nar_size, ())

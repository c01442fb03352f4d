"""`cache.push` on a `file://` cache: the NAR object is the zstd stream of the path's NAR, streamed
from the dumper's own buffers (`dump_chunks`) and byte for byte what the copying dump made; a path
whose bytes no longer match its registered hash is not published."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import IO, cast

import pytest
import zstandard

from tdxstore.errors import TransferError
from tdxstore.store import base32
from tdxstore.store.cache import open_cache, parse_narinfo, push
from tdxstore.store.nar import dump, dump_bytes
from tdxstore.store.store import Store


def _tree(root: Path) -> Path:
    """Files larger than the dumper's buffers, many small ones between them, a symlink."""
    root.mkdir()
    (root / "big").write_bytes(os.urandom(3 << 20) + bytes(5 << 20))  # random, then very compressible
    (root / "d").mkdir()
    for i in range(300):
        (root / "d" / f"f{i:03}").write_bytes(os.urandom(i * 37) + b"x" * (i * 101))
    (root / "d" / "link").symlink_to("f001")
    (root / "tail").write_bytes(os.urandom((1 << 20) + 12345))
    return root


def _copying_object(path: Path) -> bytes:
    """The object as push made it before: every batch copied into a fresh `bytes` (`nar.dump`)."""
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with cctx.stream_writer(cast(IO[bytes], out), closefd=False) as z:

        def write(chunk: bytes) -> None:
            z.write(chunk)

        dump(path, write)
    return out.getvalue()


def test_push_writes_the_same_object_bytes_without_copying_the_nar(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    try:
        sp = store.add_path(_tree(tmp_path / "tree"), "tree")
        report = push(store, open_cache(f"file://{tmp_path / 'cache'}"), [sp])
        assert (report.pushed, report.present) == (1, 0)
        info = parse_narinfo((tmp_path / "cache" / f"{sp.hash_part}.narinfo").read_text(), "narinfo")
        obj = (tmp_path / "cache" / info.url).read_bytes()
        assert obj == _copying_object(store.real_path(sp))
        assert info.file_hash == f"sha256:{base32.encode(hashlib.sha256(obj).digest())}"
        assert info.file_size == len(obj) == report.bytes
        nar = zstandard.ZstdDecompressor().decompressobj().decompress(obj)
        assert nar == dump_bytes(store.real_path(sp)) and len(nar) == info.record.nar_size
        assert push(store, open_cache(f"file://{tmp_path / 'cache'}"), [sp]).present == 1
    finally:
        store.close()


def test_push_refuses_a_path_that_no_longer_matches_its_hash(tmp_path: Path) -> None:
    """A same-size change in the store is caught while the object is made: nothing of that path is put,
    and the paths pushed before it stay complete."""
    store = Store.open(tmp_path / "home")
    try:
        good = store.add_path(_tree(tmp_path / "good"), "good")
        bad = store.add_text("bad", b"ref " + str(good).encode(), [good])
        victim = store.real_path(bad)
        os.chmod(victim, 0o644)
        victim.write_bytes(b"ref " + b"X" * len(str(good)))
        cache_dir = tmp_path / "cache"
        with pytest.raises(TransferError) as err:
            push(store, open_cache(f"file://{cache_dir}"), [bad])
        assert err.value.code == "export-corrupt-path"
        assert err.value.message == (f"{bad} no longer matches its registered NAR hash; the push of this path is "
                                     "incomplete")
        assert (cache_dir / f"{good.hash_part}.narinfo").exists()  # its reference went first, whole
        assert not (cache_dir / f"{bad.hash_part}.narinfo").exists()
        assert sorted(p.name for p in (cache_dir / "nar").iterdir()) == [
            parse_narinfo((cache_dir / f"{good.hash_part}.narinfo").read_text(), "narinfo").url.split("/")[1]]
    finally:
        store.close()

"""RustBuild with Debian's rustc/cargo 1.96 and the itoa crate from librust-itoa-dev, offline and bit for bit.

The build root (build-essential, cargo-web, rustc-web, librust-itoa-dev) is locked into a tdx.lock once;
then the program is built in two empty stores, from sources at different locations with different file
times, and both give the same NAR. Each store fetches and unpacks the root itself (about 0.5 GB); both are
removed at the end. Marked slow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tdxstore.builders.rust import RustBuild
from tdxstore.cli.builds import Lowering
from tdxstore.errors import BuildError
from tdxstore.lock.lockfile import Lockfile, dump_lock
from tdxstore.sandbox import process
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.e2e.test_builders_image import CARGO_LOCK, FILES

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]


def _crate(where: Path, mtime: int, lock: bool = True) -> Path:
    for rel in ("r/Cargo.toml", "r/src/main.rs"):
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(FILES[rel])
        os.utime(where / rel, (mtime, mtime))
    if lock:
        (where / "r" / "Cargo.lock").write_text(CARGO_LOCK)
    return where


def test_rust_with_a_debian_crate_runs_and_is_bit_for_bit_in_two_empty_stores(tmp_path: Path) -> None:
    a = _crate(tmp_path / "a", 1_000_000_000)
    (a / "tdx.lock").write_text(dump_lock(Lockfile("sha256:" + "0" * 64)))
    b = _crate(tmp_path / "else" / "b", 1_700_000_000)
    build = RustBuild(src="./r/", output="/usr/local/bin/hello-rs", build_deps=["librust-itoa-dev"],
                      name="hello-rs-twice")  # not the image test's build, which an image references
    hashes = []
    for n, src in enumerate((a, b)):
        if n:
            shutil.copy(a / "tdx.lock", b / "tdx.lock")  # the same pins at the other location
        home = tmp_path / f"store-{n}"
        store = Store.open(home)
        try:
            drv = Lowering(store, src)(build)
            realise(store, [drv])
            binary = store.real_path(drv.out) / "usr/local/bin/hello-rs"
            said = process.run([os.fspath(binary)], what="hello-rs").stdout.decode().strip()
            assert said == "hello from RustBuild, itoa formats 42"
            assert b"/build/src" not in binary.read_bytes()
            assert b"/usr/share/cargo/registry" not in binary.read_bytes()
            hashes.append((drv.out, store.query(drv.out).nar_hash))
            if n:
                with pytest.raises(BuildError) as err:
                    Lowering(store, _crate(tmp_path / "c", 1, lock=False))(build)
                assert err.value.code == "cargo-lock-missing"
        finally:
            store.close()
            remove_tree(home)  # ~0.5 GB: only the hashes outlive the store
    assert hashes[0] == hashes[1]  # the same derivation output, and the same bytes in it

"""RustBuild with Debian's rustc/cargo 1.96 and the itoa crate from librust-itoa-dev, offline and bit for bit.

The build root (build-essential, cargo-web, rustc-web, librust-itoa-dev) is locked into a tdx.lock and
realised in the persistent test store (TDX_TEST_STORE); the build is then redone from another source
location with other file times and gives the same NAR. Marked slow (two Rust builds, minutes on a busy machine).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tdxstore.builders.rust import RustBuild
from tdxstore.cli.builds import Lowering
from tdxstore.errors import BuildError
from tdxstore.lock.lockfile import Lockfile, dump_lock
from tdxstore.sandbox import process
from tdxstore.store.gc import delete_paths
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.e2e.test_builders_image import CARGO_LOCK, FILES

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]
TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))


def _crate(where: Path, mtime: int, lock: bool = True) -> Path:
    for rel in ("r/Cargo.toml", "r/src/main.rs"):
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(FILES[rel])
        os.utime(where / rel, (mtime, mtime))
    if lock:
        (where / "r" / "Cargo.lock").write_text(CARGO_LOCK)
    return where


def test_rust_with_a_debian_crate_runs_and_rebuilds_bit_for_bit(tmp_path: Path) -> None:
    a = _crate(tmp_path / "a", 1_000_000_000)
    (a / "tdx.lock").write_text(dump_lock(Lockfile("sha256:" + "0" * 64)))
    b = _crate(tmp_path / "else" / "b", 1_700_000_000)
    build = RustBuild(src="./r/", output="/usr/local/bin/hello-rs", build_deps=["librust-itoa-dev"],
                      name="hello-rs-twice")  # not the image test's build, which an image references
    store = Store.open(TEST_STORE)
    try:
        drv = Lowering(store, a)(build)
        shutil.copy(a / "tdx.lock", b / "tdx.lock")  # the same pins at the other location
        realise(store, [drv])
        binary = store.real_path(drv.out) / "usr/local/bin/hello-rs"
        said = process.run([os.fspath(binary)], what="hello-rs").stdout.decode().strip()
        assert said == "hello from RustBuild, itoa formats 42"
        assert b"/build/src" not in binary.read_bytes() and b"/usr/share/cargo/registry" not in binary.read_bytes()
        first = store.query(drv.out).nar_hash
        again = Lowering(store, b)(build)
        assert again.out == drv.out  # the source is content-addressed: another location, the same derivation
        delete_paths(store, [drv.out])
        realise(store, [again])
        assert store.query(again.out).nar_hash == first
        with pytest.raises(BuildError) as err:
            Lowering(store, _crate(tmp_path / "c", 1, lock=False))(build)
        assert err.value.code == "cargo-lock-missing"
    finally:
        store.close()

"""Typed builders through the CLI: `tdx lock`, `tdx realise FILE:ATTR` and `tdx build --frozen` of one image.

One project holds a §10.4 script build (Go from the build root), a GoBuild with Debian's Go 1.22 and one
module from a proxy on 127.0.0.1, a make CBuild and a RustBuild with a crate from Debian's librust-*-dev.
Each is realised on its own (the printed path holds the program), then built into one image whose
root file system runs each program. Marked slow (an image build); the roots, toolchains and the
image land in the persistent test store (TDX_TEST_STORE), whose Debian downloads later runs reuse.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.cli.builds import Lowering
from tdxstore.errors import HashMismatchError
from tdxstore.image.tdxfile import load_tdxfile
from tdxstore.sandbox import process
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.debrepo import ArchiveServer
from tests.e2e.buildhelp import tdx
from tests.goproxy import add_module

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]
TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
GREET = {"go.mod": "module example.com/greet\n\ngo 1.22\n",
         "greet.go": 'package greet\n\nfunc Hello() string { return "hello from GoBuild and a proxied module" }\n'}
CARGO_LOCK = """version = 4

[[package]]
name = "hello-rs"
version = "0.1.0"
dependencies = [
 "itoa",
]

[[package]]
name = "itoa"
version = "1.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "1aab8fc367588b89dcee83ab0fd66b72b50b72fa1904d7095045ace2b0c81c35"
"""
FILES = {
    "app/go.mod": "module example.com/myapp\n\ngo 1.19\n",
    "app/main.go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("my-app built by Build.script") }\n',
    "g/go.mod": "module example.com/g\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
    "g/main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
                 "func main() { fmt.Println(greet.Hello()) }\n",
    "c/hello.c": '#include <stdio.h>\nint main(void) { puts("hello from CBuild and make"); return 0; }\n',
    "c/Makefile": "build/hello: hello.c\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -o $@ hello.c\n",
    "r/Cargo.toml": '[package]\nname = "hello-rs"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nitoa = "1"\n',
    "r/Cargo.lock": CARGO_LOCK,
    "r/src/main.rs": 'fn main() {\n    let mut b = itoa::Buffer::new();\n'
                     '    println!("hello from RustBuild, itoa formats {}", b.format(42u32));\n}\n',
    "pyproject.toml": '[project]\nname = "builders-image"\nversion = "0"\ndependencies = []\n',
    "TDXfile": "from tdx import Image\nfrom builds import c, go, rs, script\n\n"
               'image = Image("builders", base="debian/bookworm")\n'
               "for b in (script, go, c, rs):\n    image.build(b)\n",
}
BUILDS = '''from tdx import Build
from tdx.builders.c import CBuild
from tdx.builders.go import GoBuild, debian_go
from tdx.builders.rust import RustBuild

script = Build.script(name="my-app", src="./app/", build_script="go build -trimpath -o $DESTDIR/usr/local/bin/my-app .",
                      output="/usr/local/bin/my-app", build_deps=["golang-go"])
go = GoBuild(src="./g/", output="/usr/local/bin/hello-go", compiler=debian_go("1.22"), goproxy="{proxy}",
             modules_hash="{modules}")
c = CBuild(src="./c/", artifacts={{"build/hello": "/usr/local/bin/hello-c"}})
rs = RustBuild(src="./r/", output="/usr/local/bin/hello-rs", build_deps=["librust-itoa-dev"])
'''
EXPECTED = {"my-app": "my-app built by Build.script", "hello-go": "hello from GoBuild and a proxied module",
            "hello-c": "hello from CBuild and make", "hello-rs": "hello from RustBuild, itoa formats 42"}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, ArchiveServer]]:
    sums = add_module(tmp_path / "proxy", "example.com/greet", "v1.0.0", GREET)
    srv = ArchiveServer(tmp_path / "proxy")
    where = tmp_path / "project"
    for rel, text in {**FILES, "g/go.sum": "".join(line + "\n" for line in sums)}.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
    yield where, srv
    srv.stop()


def _modules_hash(where: Path) -> str:
    """The pin's workflow from the go-modules-unpinned hint: a placeholder, then `Got:` of the mismatch."""
    store = Store.open(TEST_STORE)
    try:
        go = load_tdxfile(where / "TDXfile").builds[1]
        try:
            realise(store, [Lowering(store, where)(go)])
        except HashMismatchError as e:
            return e.got.removeprefix("sha256:")
    finally:
        store.close()
    raise AssertionError("a placeholder modules_hash was accepted")


def _in_image(rootfs: Path, program: str) -> str:
    argv = ["bwrap", "--ro-bind", os.fspath(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all",
            "--clearenv", program]
    return process.run(argv, what=f"{program} in the image").stdout.decode().strip()


def test_one_image_with_go_script_c_and_rust_builds(project: tuple[Path, ArchiveServer], tmp_path: Path) -> None:
    where, srv = project
    (where / "builds.py").write_text(BUILDS.format(proxy=srv.url, modules="0" * 64))
    lock = tdx(TEST_STORE, "lock", "-p", where, timeout=1800)
    assert lock.rc == 0, str(lock)
    assert "[[build-root.set]]" in (where / "tdx.lock").read_text()
    (where / "builds.py").write_text(BUILDS.format(proxy=srv.url, modules=_modules_hash(where)))

    for attr, program in (("script", "my-app"), ("go", "hello-go"), ("c", "hello-c"), ("rs", "hello-rs")):
        run = tdx(TEST_STORE, "realise", where / f"builds.py:{attr}", timeout=1800)
        assert run.rc == 0, str(run)
        out = Path(run.stdout.strip().replace("/tdx/store", os.fspath(TEST_STORE / "store"), 1))
        binary = out / "usr/local/bin" / program
        assert process.run([os.fspath(binary)], what=program).stdout.decode().strip() == EXPECTED[program]

    built = tdx(TEST_STORE, "build", "--frozen", where, "-o", tmp_path / "out", "--format", "directory",
                timeout=3000)
    try:
        assert built.rc == 0, str(built)
        image = (tmp_path / "out" / "builders").resolve()
        with tarfile.open(image / "image.tar") as tf:
            names = {m.name.removeprefix("./") for m in tf if m.isfile()}
        assert {f"usr/local/bin/{p}" for p in EXPECTED} <= names
        rootfs = tmp_path / "out" / "builders.rootfs"
        for program, says in EXPECTED.items():
            assert _in_image(rootfs, f"/usr/local/bin/{program}") == says
    finally:
        if (tmp_path / "out").exists():
            shutil.rmtree(tmp_path / "out", ignore_errors=True)

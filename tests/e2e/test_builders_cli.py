"""Bad builder input through the CLI: one `error:` line each, a non-zero exit, nothing built.

A locked project (tdx.lock with its `[build-root]` section, made once by `tdx lock`) in the persistent
test store (TDX_TEST_STORE), so the build roots are lookups after the first run. Marked `network`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debrepo import ArchiveServer
from tests.e2e.buildhelp import Run, tdx
from tests.goproxy import add_module

pytestmark = [pytest.mark.network, pytest.mark.needs_bwrap]
TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
GREET = {"go.mod": "module example.com/greet\n\ngo 1.22\n", "greet.go": "package greet\n"}
BUILDS = '''from tdx import Build
from tdx.builders.c import CBuild
from tdx.builders.go import GoBuild, debian_go

unpinned = GoBuild(src="./g/", output="/usr/local/bin/g", compiler=debian_go("1.22"))
wrong = GoBuild(src="./g/", output="/usr/local/bin/g", compiler=debian_go("1.22"), modules_hash="0" * 64,
                goproxy="{proxy}")
broken = CBuild(src="./c/", artifacts={{"build/hello": "/usr/local/bin/hello"}})
nothing = Build.script(name="nothing", src="./c/", build_script="true", artifacts={{"build/none": "/usr/bin/none"}})
'''
FILES = {
    "g/go.mod": "module example.com/g\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
    "g/main.go": "package main\n\nfunc main() {}\n",
    "c/hello.c": "int main(void) { return missing_function(; }\n",
    "c/Makefile": "build/hello: hello.c\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -o $@ hello.c\n",
    "pyproject.toml": '[project]\nname = "bad-builds"\nversion = "0"\ndependencies = []\n',
    "TDXfile": 'from tdx import Image\nfrom builds import broken, unpinned\n'
               'image = Image("bad", base="debian/bookworm")\nimage.build(broken)\nimage.build(unpinned)\n',
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("bad-builds")
    sums = add_module(where / "proxy", "example.com/greet", "v1.0.0", GREET)
    srv = ArchiveServer(where / "proxy")
    files = {**FILES, "builds.py": BUILDS.format(proxy=srv.url), "g/go.sum": "".join(f"{s}\n" for s in sums)}
    for rel, text in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
    run = tdx(TEST_STORE, "lock", "-p", where, timeout=1800)
    assert run.rc == 0, str(run)
    yield where
    srv.stop()


def _one_error(run: Run) -> str:
    assert run.rc != 0 and not run.stdout.strip(), str(run)
    (line,) = run.error_lines()
    return line


@pytest.mark.parametrize(("attr", "says"), [
    ("unpinned", "requires modules but declares no modules_hash="),
    ("wrong", "hash mismatch"),
    ("broken", "failed with exit status"),
    ("nothing", "failed with exit status"),
])
def test_bad_builder_input_is_one_error(project: Path, attr: str, says: str) -> None:
    run = tdx(TEST_STORE, "realise", project / f"builds.py:{attr}", timeout=900)
    assert says in _one_error(run), str(run)
    if attr == "broken":
        assert "missing_function" in run.stderr  # the compiler's own lines
    if attr == "nothing":
        assert "tdx: artifact 'build/none' (for '/usr/bin/none') was not produced by the build script" in run.stderr


def test_frozen_build_refuses_a_build_root_the_lock_does_not_pin(project: Path) -> None:
    (project / "TDXfile").write_text('from tdx import Image, Build\nimage = Image("bad", base="debian/bookworm")\n'
                                     'image.build(Build.script(name="x", src="./c/", build_script="true", '
                                     'output="/x", build_deps=["cmake"]))\n')
    run = tdx(TEST_STORE, "build", "--frozen", project, "-o", project / "out", timeout=900)
    assert "--frozen" in _one_error(run) and "cmake" in run.stderr

"""`image.build(...)` in the pipeline: typed builds go through `lower`, path clashes are one error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdxstore.cli.builds import Lowering, requests_of, with_section
from tdxstore.errors import ImageError, LockfileError
from tdxstore.image import pipeline
from tdxstore.lock.lockfile import Lockfile, dump_lock, parse_lock
from tdxstore.packages.buildroot import SECTION, RootRequest
from tdxstore.packages.index import Mirrors
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

TWO = '''from tdx import Image, Build
image = Image("two", base="debian/bookworm")
image.build(Build.script(name="a", src="./a", build_script="true", output="/usr/local/bin/tool"))
image.build(Build.script(name="b", src="./b", build_script="true", artifacts={"out/tool": "/usr/local/bin/tool"}))
'''
ONE = '''from tdx import Image, Build
from tdx.builders.go import GoBuild, debian_go
image = Image("one", base="debian/bookworm")
image.build(Build.script(name="a", src="./a", build_script="true", output="/usr/local/bin/a"))
image.build(Build.go(src="./g", output="/usr/local/bin/g", compiler=debian_go("1.22")))
'''
UNREACHABLE = Mirrors({"debian": "http://127.0.0.1:9", "debian-security": "http://127.0.0.1:9"})


def _project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "TDXfile").write_text(text)
    return tmp_path / "TDXfile"


def test_two_builds_claiming_one_image_path_name_both_call_sites(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        pipeline.evaluate(_project(tmp_path, TWO))
    assert err.value.code == "build-path-conflict" and "'/usr/local/bin/tool'" in err.value.message
    assert "TDXfile:3" in (err.value.detail or "") and "TDXfile:4" in (err.value.detail or "")


def test_typed_builds_are_lowered_by_the_callback_in_order(root: StorePath, tmp_path: Path) -> None:
    seen: list[str] = []

    def lower(build: object) -> Derivation:
        seen.append(type(build).__name__)
        return derivation(str(build.name), "/bin/sh", ["-c", "true"], root=root)

    p = pipeline.evaluate(_project(tmp_path, ONE), lower=lower)
    assert seen == ["ScriptBuild", "GoBuild"] and [d.name for d in p.builds][-2:] == ["a", "g"]
    with pytest.raises(ImageError) as err:
        pipeline.evaluate(_project(tmp_path, ONE))
    assert err.value.code == "builder-unavailable"


def test_each_build_asks_for_its_root_and_toolchain(root: StorePath, tmp_path: Path) -> None:
    from tdxstore.image.tdxfile import load_tdxfile

    a, g = load_tdxfile(_project(tmp_path, ONE)).builds
    assert requests_of(a) == [RootRequest(("build-essential",))]
    assert requests_of(g) == [RootRequest(("build-essential",)),
                              RootRequest(("golang-1.22-go/bookworm-backports",), "/usr/lib/go-1.22", "go-1.22")]
    assert requests_of(derivation("x", "/bin/sh", root=root)) == []


def test_frozen_refuses_a_root_the_lock_does_not_pin(store: Store, tmp_path: Path) -> None:
    from tdxstore.image.tdxfile import load_tdxfile

    lock = Lockfile("sha256:" + "0" * 64)
    (tmp_path / "tdx.lock").write_text(dump_lock(lock))
    a, _ = load_tdxfile(_project(tmp_path, ONE)).builds
    with pytest.raises(LockfileError) as err:
        Lowering(store, tmp_path, frozen=True, mirrors=UNREACHABLE)(a)
    assert err.value.code == "lock-stale" and "build-essential" in err.value.message


def test_the_section_survives_the_lock_codec_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from tdxstore.packages.buildroot import from_section
    from tests.unit.packages.test_buildroot import _lock

    lock = with_section(Lockfile("sha256:" + "0" * 64), _lock())
    back = parse_lock(dump_lock(lock))
    assert from_section(back.extra[SECTION]) == _lock() and not caplog.records
    assert SECTION not in with_section(back, from_section(None)).extra


def test_lock_changes_name_each_build_root() -> None:
    from tdxstore.cli.builds import section_changes
    from tdxstore.packages.buildroot import BuildRootLock
    from tests.unit.packages.test_buildroot import _lock

    empty = Lockfile("sha256:" + "0" * 64)
    full = with_section(empty, _lock())
    assert section_changes(None, full) == section_changes(empty, full) == [
        "+ build root of [build-essential, libssl-dev]",
        "+ toolchain go-1.22 (/usr/lib/go-1.22) of [golang-1.22-go/bookworm-backports]"]
    fewer = with_section(empty, BuildRootLock(_lock().tools, _lock().roots[1:]))
    assert section_changes(full, fewer) == ["- build root of [build-essential, libssl-dev]"]
    assert section_changes(full, full) == []

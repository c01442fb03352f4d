"""Build.script as a real derivation on a busybox root: $DESTDIR, artifacts, .gitignore, missing artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdxstore.builders.c import CBuild
from tdxstore.builders.script import Build, add_source, script_derivation
from tdxstore.errors import BuildError
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

pytestmark = pytest.mark.needs_bwrap


def _project(tmp: Path) -> Path:
    app = tmp / "app"
    (app / "build").mkdir(parents=True)
    (app / "tool.sh").write_text("#!/bin/sh\necho tool says hi\n")
    (app / ".gitignore").write_text("secret.env\nbuild/\n")
    (app / "secret.env").write_text("TOKEN=do-not-ship\n")
    (app / "build" / "stale").write_text("old output\n")
    return app


def test_destdir_and_artifacts_land_at_image_paths(store: Store, root: StorePath, tmp_path: Path) -> None:
    app = _project(tmp_path)
    b = Build.script(name="my-tool", src="./app/",
                     build_script="mkdir -p build $DESTDIR/usr/local/bin && cp tool.sh build/tool && "
                                  "cp tool.sh $DESTDIR/usr/local/bin/my-app && echo $SOURCE_DATE_EPOCH > build/sde",
                     artifacts={"build/tool": "/usr/bin/tool", "build/sde": "/etc/sde"},
                     output="/usr/local/bin/my-app")
    drv = script_derivation(store, b, root, base=tmp_path)
    realise(store, [drv])
    out = store.real_path(drv.out)
    assert (out / "usr/local/bin/my-app").read_text() == "#!/bin/sh\necho tool says hi\n"
    assert (out / "usr/bin/tool").is_file() and (out / "etc/sde").read_text() == "0\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "etc/sde", "usr/bin/tool", "usr/local/bin/my-app"]
    # the source in the store holds what git sees: no ignored secret, no stale build output
    src = store.real_path(add_source(store, "./app/", "my-tool", base=tmp_path))
    assert sorted(p.name for p in src.iterdir()) == [".gitignore", "tool.sh"]
    # the same declaration from another directory gives the same derivation
    other = tmp_path / "elsewhere"
    other.mkdir()
    app.rename(other / "app")
    assert script_derivation(store, b, root, base=other).out == drv.out


def test_missing_artifact_names_it(store: Store, root: StorePath, tmp_path: Path) -> None:
    _project(tmp_path)
    b = Build.script(name="t", src=str(tmp_path / "app"), build_script="true",
                     artifacts={"build/nothing": "/usr/bin/nothing"})
    with pytest.raises(BuildError) as err:
        realise(store, [script_derivation(store, b, root)])
    assert err.value.code == "build-failed"
    assert "artifact 'build/nothing' (for '/usr/bin/nothing') was not produced" in (err.value.detail or "")


def test_output_not_installed_says_destdir(store: Store, root: StorePath, tmp_path: Path) -> None:
    _project(tmp_path)
    b = Build.script(name="t", src=str(tmp_path / "app"), build_script="true", output="/usr/local/bin/x")
    with pytest.raises(BuildError) as err:
        realise(store, [script_derivation(store, b, root)])
    assert "output '/usr/local/bin/x' was not installed" in (err.value.detail or "")


def test_script_failure_shows_its_own_lines(store: Store, root: StorePath, tmp_path: Path) -> None:
    _project(tmp_path)
    b = Build.script(name="t", src=str(tmp_path / "app"), build_script="echo 'main.c:3: error: boom' >&2; exit 2",
                     output="/x")
    with pytest.raises(BuildError) as err:
        realise(store, [script_derivation(store, b, root)])
    assert "main.c:3: error: boom" in (err.value.detail or "")


def test_missing_src_is_one_clear_error(store: Store, root: StorePath, tmp_path: Path) -> None:
    b = Build.script(name="t", src="./nope/", build_script="true", output="/x")
    with pytest.raises(BuildError) as err:
        script_derivation(store, b, root, base=tmp_path)
    assert err.value.code == "source-missing" and "nope" in err.value.message


def test_reproducible_env_is_on_by_default_and_can_be_switched_off(store: Store, root: StorePath,
                                                                   tmp_path: Path) -> None:
    _project(tmp_path)
    on = script_derivation(store, Build.script("t", str(tmp_path / "app"), "true", output="/x"), root).env_dict()
    off = script_derivation(store, Build.script("t", str(tmp_path / "app"), "true", output="/x",
                                                reproducible=False), root).env_dict()
    assert on["SOURCE_DATE_EPOCH"] == "0" and "-ffile-prefix-map=/build/src=." in on["CFLAGS"]
    assert "SOURCE_DATE_EPOCH" not in off and "CFLAGS" not in off


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"artifacts": {"a": "/usr/bin/x", "b": "/usr/bin/x"}}, "invalid-build"),
    ({"artifacts": {"a": "relative"}}, "invalid-build"),
    ({}, "invalid-build"),
    ({"artifacts": {"a": "/x"}, "compiler_source": "gcc.tar.xz"}, "invalid-build"),
    ({"artifacts": {"a": "/x"}, "compiler": "/usr/bin/gcc"}, "invalid-build"),
])
def test_cbuild_bad_input(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(BuildError) as err:
        CBuild(src="./app/", **kwargs)  # type: ignore[arg-type]
    assert err.value.code == code


def test_cbuild_lowers_to_a_script_build() -> None:
    c = CBuild(src="./my-tool/", build_script="make release", artifacts={"build/my-tool": "/usr/local/bin/my-tool"},
               build_deps=["libssl-dev"])
    assert c.name == "my-tool" and c.script.build_script == "make release"
    assert c.root_packages == ("build-essential", "libssl-dev")


def test_build_essential_matches_the_packages_layer() -> None:
    from tdxstore.builders.script import BUILD_ESSENTIAL
    from tdxstore.packages import BUILD_ESSENTIAL as PACKAGES_BUILD_ESSENTIAL

    assert BUILD_ESSENTIAL == PACKAGES_BUILD_ESSENTIAL

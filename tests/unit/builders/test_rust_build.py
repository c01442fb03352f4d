"""RustBuild's declaration: the Debian toolchain by default, unpinned versions, Cargo.lock, the offline cargo setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdx import Build
from tdx.builders.rust import RustBuild
from tdxstore.errors import BuildError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

CARGO_TOML = '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\n'


def _crate(tmp_path: Path, deps: bool, lock: bool) -> Path:
    crate = tmp_path / "hello"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(CARGO_TOML + ('\n[dependencies]\nitoa = "1"\n' if deps else ""))
    (crate / "src" / "main.rs").write_text('fn main() { println!("hi"); }\n')
    if lock:
        (crate / "Cargo.lock").write_text("version = 3\n")
    return crate


def test_default_is_debians_rustc_and_cargo_in_the_root() -> None:
    b = RustBuild(src="./hello/", output="/usr/local/bin/hello", build_deps=["librust-itoa-dev"])
    assert b.root_packages == ("build-essential", "cargo-web", "librust-itoa-dev", "rustc-web")
    assert (b.bin, b.name, b.image_paths) == ("hello", "hello", ("/usr/local/bin/hello",))
    assert Build.rust(src="./hello/", output="/usr/local/bin/hello") == RustBuild("./hello/", "/usr/local/bin/hello")


def test_unknown_toolchain_says_how_to_pass_compiler() -> None:
    with pytest.raises(BuildError) as err:
        RustBuild(toolchain="1.83.0", src="./raiko/", output="/usr/local/bin/raiko")
    assert err.value.code == "rust-version-unpinned" and "compiler=" in (err.value.hint or "")


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"bin": "no spaces"}, "invalid-build"),
    ({"features": ["tdx", "bad feature"]}, "invalid-build"),
    ({"compiler": "/usr/bin/rustc"}, "invalid-build"),
    ({"output": "relative/path"}, "invalid-build"),
])
def test_bad_declarations_are_one_error(kwargs: dict[str, object], code: str) -> None:
    args: dict[str, object] = {"src": "./x/", "output": "/usr/local/bin/x", **kwargs}
    with pytest.raises(BuildError) as err:
        RustBuild(**args)  # type: ignore[arg-type]
    assert err.value.code == code


def test_dependencies_without_cargo_lock_are_refused(store: Store, root: StorePath, tmp_path: Path) -> None:
    _crate(tmp_path, deps=True, lock=False)
    with pytest.raises(BuildError) as err:
        RustBuild(src="./hello/", output="/usr/local/bin/hello").derivation_on(store, root, base=tmp_path)
    assert err.value.code == "cargo-lock-missing"
    with pytest.raises(BuildError) as missing:
        RustBuild(src="./nothing/", output="/usr/local/bin/hello").derivation_on(store, root, base=tmp_path)
    assert missing.value.code == "source-missing"


def test_offline_locked_build_with_remapped_paths(store: Store, root: StorePath, tmp_path: Path) -> None:
    _crate(tmp_path, deps=True, lock=True)
    drv = RustBuild(src="./hello/", output="/usr/local/bin/hello", features=["b", "a"]).derivation_on(
        store, root, base=tmp_path)
    env = drv.env_dict()
    assert "cargo build --release --offline --locked --bin hello --features a,b" in env["BUILD_SCRIPT"]
    assert "offline = true" in env["BUILD_SCRIPT"] and env["CRATES"] == "/usr/share/cargo/registry"
    assert "--remap-path-prefix=/build/src=." in env["RUSTFLAGS"] and env["SOURCE_DATE_EPOCH"] == "0"
    loose = RustBuild(src="./hello/", output="/usr/local/bin/hello", reproducible=False).derivation_on(
        store, root, base=tmp_path).env_dict()
    assert "RUSTFLAGS" not in loose and "SOURCE_DATE_EPOCH" not in loose

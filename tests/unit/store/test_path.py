"""Store paths and Nix base-32: equal to Nix's own computation (nix-store is the oracle)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdxstore.errors import StorePathError, UsageError
from tdxstore.store import base32
from tdxstore.store.path import StorePath, check_name, make_fixed_output_path

nix = pytest.mark.skipif(shutil.which("nix-store") is None, reason="nix-store not installed")


@given(st.binary(min_size=0, max_size=64))
def test_base32_round_trip(data: bytes) -> None:
    assert base32.decode(base32.encode(data)) == data


def test_base32_known_vector() -> None:
    # sha256("") in Nix base-32, as printed by `nix-hash --type sha256 --to-base32 e3b0…`
    digest = hashlib.sha256(b"").digest()
    assert base32.encode(digest) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"


@pytest.mark.parametrize("bad", ["e" * 52, "0" * 51, "!" + "0" * 51])
def test_base32_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        base32.decode(bad)


def _nix_fixed(hex_: str, name: str, recursive: bool) -> str:
    argv = ["nix-store", "--print-fixed-path", *(["--recursive"] if recursive else []), "sha256", hex_, name]
    env = {**os.environ, "NIX_STORE_DIR": "/tdx/store"}
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout.strip()


@nix
@pytest.mark.needs_nix
@pytest.mark.parametrize("recursive", [False, True])
@pytest.mark.parametrize("seed", [b"", b"hello", b"x" * 1000])
def test_fixed_output_path_equals_nix(seed: bytes, recursive: bool) -> None:
    hex_ = hashlib.sha256(seed).hexdigest()
    for name in ("a", "go1.22.5.linux-amd64.tar.gz", "name+with=odd?chars_-."):
        ours = make_fixed_output_path(hex_, name, recursive=recursive).logical
        assert ours == _nix_fixed(hex_, name, recursive)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "sp ace", "x" * 212, "ü"])
def test_bad_names(name: str) -> None:
    with pytest.raises(StorePathError):
        check_name(name)


@pytest.mark.parametrize("text", [
    "/nix/store/" + "0" * 32 + "-x", "/tdx/store/" + "0" * 31 + "-x", "/tdx/store/" + "e" * 32 + "-x",
    "/tdx/store/" + "0" * 32 + "-x/sub", "/tdx/store/" + "0" * 32,
])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(StorePathError):
        StorePath.parse(text)


def test_parse_round_trip() -> None:
    sp = StorePath("0" * 32, "hello-1.0")
    assert StorePath.parse(sp.logical) == sp

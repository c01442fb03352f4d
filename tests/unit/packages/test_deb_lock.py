"""The locked package set: validation of each entry, and its TOML form (golden file)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tdxstore.errors import PackageError
from tdxstore.packages.lock import LockedPackage, PackageSet, PackageSource, diff, from_toml_dict, to_toml_dict

GOLDEN = Path(__file__).parents[2] / "data" / "debian" / "lock.toml"
SHA = "ab" * 32


def _set(**over: Any) -> PackageSet:
    pkg = {"name": "hello", "version": "2.10-3", "arch": "amd64", "suite": "bookworm",
           "path": "pool/main/h/hello/hello_2.10-3_amd64.deb", "sha256": SHA, "size": 53000, **over}
    return PackageSet("amd64", (PackageSource("bookworm", ("main",), "debian", "20260711T101637Z"),),
                      (LockedPackage(**pkg),
                       LockedPackage("base-files", "12.4+deb12u11", "amd64", "bookworm",
                                     "pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb", "cd" * 32, 70000)))


def test_toml_round_trip_matches_golden() -> None:
    pkgs = _set()
    text = tomli_w.dumps({"debian": to_toml_dict(pkgs)})
    assert text == GOLDEN.read_text()
    back = from_toml_dict(tomllib.loads(text)["debian"], arch="amd64")
    assert back == pkgs and back.key == pkgs.key
    assert [p.name for p in back.packages] == ["base-files", "hello"]


@pytest.mark.parametrize(("over", "code"), [
    ({"sha256": "AB" * 32}, "bad-hash"),
    ({"sha256": "ab" * 31}, "bad-hash"),
    ({"arch": "arm64"}, "wrong-architecture"),
    ({"suite": "trixie"}, "suite-not-in-sources"),
    ({"path": "../etc/passwd.deb"}, "lock-entry-invalid"),
    ({"version": "1 2"}, "lock-entry-invalid"),
    ({"size": 0}, "lock-entry-invalid"),
])
def test_bad_entries(over: dict[str, Any], code: str) -> None:
    with pytest.raises(PackageError) as err:
        _set(**over)
    assert err.value.code == code


def test_lock_for_another_architecture_and_unknown_keys() -> None:
    data = to_toml_dict(_set())
    with pytest.raises(PackageError) as err:
        from_toml_dict(data, arch="arm64")
    assert err.value.code == "wrong-architecture"
    data["package"][0]["url"] = "http://deb.debian.org/debian/pool/x.deb"
    with pytest.raises(PackageError) as err:
        from_toml_dict(data)
    assert err.value.code == "lock-entry-invalid" and "url" in err.value.message


def test_diff_and_key() -> None:
    a = _set()
    b = _set(version="2.10-4", path="pool/main/h/hello/hello_2.10-4_amd64.deb", sha256="ef" * 32)
    assert diff(a, b) == ([], [], [("hello", "2.10-3", "2.10-4")])
    assert a.key != b.key
    # the timestamp of a source is not part of the set's identity, only the files are
    c = PackageSet("amd64", (PackageSource("bookworm", ("main",), "debian", "20270101T000000Z"),), a.packages)
    assert c.key == a.key

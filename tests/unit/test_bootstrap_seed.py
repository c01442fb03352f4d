"""The seed's lock: what it holds, and that its root's path follows the locked files exactly (nothing built)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bootstrap.seed import SEED_NAME, seed_sets
from tdxstore.builders.gosource import GoFromSource
from tdxstore.packages import Mirrors, deb_derivations
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.root import build_root_derivation
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import make_fixed_output_path

BUSYBOX_ROOT = make_fixed_output_path("1" * 64, "busybox-bootstrap-root", recursive=True)
MIRRORS = Mirrors({"debian": "http://127.0.0.1:9/debian"})


def _root(pkgs: PackageSet) -> Derivation:
    return build_root_derivation(pkgs, deb_derivations(pkgs, MIRRORS), BUSYBOX_ROOT, name=SEED_NAME)


def test_the_seed_locks_a_c_compiler_make_binutils_libc_and_gccgo() -> None:
    pkgs, tools = seed_sets()
    names = {p.name for p in pkgs.packages}
    assert {"gcc-12", "make", "binutils", "libc6-dev", "gccgo-12", "libgo21", "dpkg", "tar", "bash"} <= names
    assert [p.name for p in tools.packages] == ["busybox-static"]
    assert all(len(p.sha256) == 64 for p in pkgs.packages)


def test_one_package_version_changes_the_seed_path_and_nothing_else_does(tmp_path: Path) -> None:
    pkgs, _ = seed_sets()
    same = seed_sets()[0]
    assert _root(pkgs).out == _root(same).out
    gcc = next(p for p in pkgs.packages if p.name == "gcc-12")
    bumped = dataclasses.replace(gcc, version=gcc.version + "+1", sha256="f" * 64)
    other = dataclasses.replace(pkgs, packages=tuple(bumped if p is gcc else p for p in pkgs.packages))
    assert _root(other).out != _root(pkgs).out
    elsewhere = Mirrors({"debian": "http://deb.example.org/debian"})  # the mirror is not part of the path
    assert build_root_derivation(pkgs, deb_derivations(pkgs, elsewhere), BUSYBOX_ROOT, name=SEED_NAME).out == \
        _root(pkgs).out


def test_one_seed_package_version_changes_every_go_stage_and_an_unchanged_lock_changes_none() -> None:
    pkgs, _ = seed_sets()
    chain = GoFromSource(version="1.24.4", root=_root(pkgs)).derivations()
    again = GoFromSource(version="1.24.4", root=_root(seed_sets()[0])).derivations()
    assert [(d.out, d.drv_path) for d in again] == [(d.out, d.drv_path) for d in chain]
    libc = next(p for p in pkgs.packages if p.name == "libc6-dev")
    bumped = dataclasses.replace(libc, version=libc.version + "+1", sha256="e" * 64)
    other = dataclasses.replace(pkgs, packages=tuple(bumped if p is libc else p for p in pkgs.packages))
    moved = GoFromSource(version="1.24.4", root=_root(other)).derivations()
    assert [d.name for d in moved] == ["go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    assert all(a.out != b.out for a, b in zip(chain, moved, strict=True))
    sources = {i.out for d in chain for i in d.inputs if isinstance(i, Derivation) and i.fixed is not None}
    assert sources == {i.out for d in moved for i in d.inputs if isinstance(i, Derivation) and i.fixed is not None}

"""The seed: the only binary input of every bootstrap chain, a Debian build root from a pinned set.

`seed.lock.toml` (next to this file) pins bookworm's `build-essential` and `gccgo-12` (gcc, make,
binutils, libc, gccgo and libgo) by SHA-256, plus `busybox-static` for the unpacking step. Nothing
here resolves against a live archive unless `relock()` is called; the root's path is keyed by the
locked files only, so changing one package version changes every path built on it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from tdxstore.packages import Mirrors, PackageSet, from_toml_dict, resolve, to_toml_dict
from tdxstore.packages.index import fetch_suite
from tdxstore.packages.repo import BOOTSTRAP_PACKAGE, realise_unpacked
from tdxstore.packages.root import build_root_derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

SEED_LOCK = Path(__file__).with_name("seed.lock.toml")
#: What the seed is asked for; apt resolves the rest (Debian's essential set comes with it).
SEED_REQUEST = ("build-essential", "gccgo-12")
SEED_NAME = "bootstrap-seed"
DEBIAN = "http://deb.debian.org/debian"
_HEADER = """\
# The seed of every bootstrap chain: Debian bookworm's build-essential and gccgo-12, pinned by SHA-256.
# Made by resolving SEED_REQUEST (and ['busybox-static'] with base=()) against the verified bookworm
# index with bootstrap/seed.py's relock(); see docs/bootstrap.md.
"""


def seed_sets(lock: Path = SEED_LOCK) -> tuple[PackageSet, PackageSet]:
    """(the seed's package set, the tools set locking busybox-static) read from `lock`."""
    data = tomllib.loads(lock.read_text())
    return from_toml_dict(data["seed"]), from_toml_dict(data["tools"])


def realise_seed(store: Store, mirrors: Mirrors | None = None, *, lock: Path = SEED_LOCK,
                 jobs: int = 4) -> StorePath:
    """Fetch what is missing of the locked seed, then build (or find) its root file system."""
    pkgs, tools = seed_sets(lock)
    return realise_unpacked(store, pkgs, tools, mirrors or Mirrors({"debian": DEBIAN}),
                            lambda debs, root: build_root_derivation(pkgs, debs, root, name=SEED_NAME), jobs=jobs)


def relock(store: Store, lock: Path = SEED_LOCK, *, mirror: str = DEBIAN) -> PackageSet:
    """Resolve SEED_REQUEST against today's verified bookworm index and write `lock` (a deliberate update)."""
    bookworm = fetch_suite(store, mirror, "bookworm")
    pkgs = resolve(store, [bookworm], list(SEED_REQUEST))
    tools = resolve(store, [bookworm], [BOOTSTRAP_PACKAGE], base=())
    lock.write_text(_HEADER + tomli_w.dumps({"seed": to_toml_dict(pkgs), "tools": to_toml_dict(tools)}, indent=4))
    return pkgs

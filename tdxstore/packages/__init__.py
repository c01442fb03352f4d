"""Debian package sets pinned by SHA-256 (L4): verified indexes, apt resolution, locked sets, .deb store paths,
local repositories and build roots. Built on the store; the pure .deb reader and pins are `tdxstore.debian` (L1).
"""

from tdxstore.packages.debs import SNAPSHOT_ENV, deb_derivation, deb_derivations, locked_paths, realise_debs
from tdxstore.packages.index import Mirrors, SuiteIndex, archive_of, fetch_suite
from tdxstore.packages.lock import LockedPackage, PackageSet, PackageSource, diff, from_toml_dict, to_toml_dict
from tdxstore.packages.release import DEBIAN_KEYRING, Release, verify_inrelease
from tdxstore.packages.repo import BOOTSTRAP_PACKAGE, bootstrap_root, repo_derivation
from tdxstore.packages.resolve import BASE_SET, Request, lock_packages, resolve
from tdxstore.packages.root import BUILD_ESSENTIAL, build_root_derivation, realise_build_root

__all__ = [
    "BASE_SET", "BOOTSTRAP_PACKAGE", "BUILD_ESSENTIAL", "DEBIAN_KEYRING", "SNAPSHOT_ENV", "LockedPackage",
    "Mirrors", "PackageSet", "PackageSource", "Release", "Request", "SuiteIndex", "archive_of", "bootstrap_root",
    "build_root_derivation", "deb_derivation", "deb_derivations", "diff", "fetch_suite", "from_toml_dict",
    "lock_packages", "locked_paths", "realise_build_root", "realise_debs", "repo_derivation", "resolve", "to_toml_dict",
    "verify_inrelease",
]

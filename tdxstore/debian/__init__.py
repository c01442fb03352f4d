"""Debian packages pinned by SHA-256: verified indexes, apt resolution, locked sets, .deb store paths."""

from tdxstore.debian.index import Mirrors, SuiteIndex, archive_of, fetch_suite
from tdxstore.debian.lock import LockedPackage, PackageSet, PackageSource, diff, from_toml_dict, to_toml_dict
from tdxstore.debian.release import DEBIAN_KEYRING, Release, verify_inrelease
from tdxstore.debian.resolve import BASE_SET, Request, resolve

__all__ = [
    "BASE_SET", "DEBIAN_KEYRING", "LockedPackage", "Mirrors", "PackageSet", "PackageSource", "Release",
    "Request", "SuiteIndex", "archive_of", "diff", "fetch_suite", "from_toml_dict", "resolve", "to_toml_dict",
    "verify_inrelease",
]

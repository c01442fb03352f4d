"""Module locking (L3): the `tdx.lock` model and codec, the §8.3 tree hash, resolution and materialisation.

It never evaluates a TDXfile (that is `image/`'s job; the CLI composes both) and never prints.
"""

from __future__ import annotations

from tdxstore.lock.lockfile import (
    LOCK_NAME,
    FetchEntry,
    Lockfile,
    ModuleEntry,
    ModuleSource,
    dump_lock,
    parse_lock,
    read_lock,
    write_lock,
)

__all__ = ["LOCK_NAME", "FetchEntry", "Lockfile", "ModuleEntry", "ModuleSource", "dump_lock", "parse_lock",
           "read_lock", "write_lock"]

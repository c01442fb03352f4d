"""Canonicalise a freshly built tree before it is hashed and becomes a store path (L3).

After `normalise_tree`: files are 0444 or 0555 (0555 when any execute bit was set), directories
0555, no setuid/setgid/sticky bit anywhere, and every mtime and atime is 1 (as Nix sets them),
symlinks included. It never follows a symlink, and refuses device files, sockets and fifos:
they cannot be represented in a NAR. It does not hash, move or register anything.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tdxstore.errors import NarError

CANONICAL_TIME = 1  # seconds since the epoch; Nix's mtime for store paths
_TIMES_NS = (CANONICAL_TIME * 1_000_000_000, CANONICAL_TIME * 1_000_000_000)
_ANY_EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}


def normalise_tree(path: Path) -> None:
    """Canonicalise `path` (a file, symlink or directory tree) in place; see the module docstring."""
    try:
        _normalise(os.fsencode(path), os.lstat(path))
    except RecursionError as e:
        raise NarError(f"{str(path)!r} is nested too deeply to normalise", code="nar-too-deep") from e


def _normalise(path: bytes, st: os.stat_result) -> None:
    mode = st.st_mode
    try:
        if stat.S_ISDIR(mode):
            _directory(path, mode)
        elif stat.S_ISREG(mode):
            if stat.S_IMODE(mode) != (0o555 if mode & _ANY_EXEC else 0o444):
                os.chmod(path, 0o555 if mode & _ANY_EXEC else 0o444)
        elif not stat.S_ISLNK(mode):  # Linux has no lchmod: a symlink's own mode is always 0777
            kind = _KINDS.get(stat.S_IFMT(mode), f"file of type {stat.S_IFMT(mode):o}")
            raise NarError(f"{os.fsdecode(path)!r} is a {kind}, which a store path cannot hold",
                           hint="Remove it from the build output (store paths hold only regular "
                                "files, directories and symlinks).",
                           code="nar-unsupported-file")
        if st.st_mtime_ns != _TIMES_NS[1] or st.st_atime_ns != _TIMES_NS[0]:
            os.utime(path, ns=_TIMES_NS, follow_symlinks=False)
    except OSError as e:
        raise NarError(f"cannot normalise {os.fsdecode(path)!r}: {e.strerror or e}",
                       hint="Check that the build output is owned by this user.",
                       code="normalise-failed") from e


def _directory(path: bytes, mode: int) -> None:
    # The owner needs r-x to list a directory and look up its children (a build may leave 0o000).
    if mode & 0o500 != 0o500:
        os.chmod(path, stat.S_IMODE(mode) | 0o500)
    with os.scandir(path) as it:
        entries = [(e.path, e.stat(follow_symlinks=False)) for e in it]
    for child, child_st in entries:
        _normalise(child, child_st)
    # Last, so the children were reachable while being processed; chmod does not touch mtime.
    os.chmod(path, 0o555)


def make_tree_writable(path: Path) -> None:
    """Give the owner write access to every directory below `path` (for deletion or repair).

    Files stay read-only: unlinking needs write access to the directory only.
    """
    _writable(os.fsencode(path))


def _writable(path: bytes) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return
    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)  # before listing: it may have been 0o000
    with os.scandir(path) as it:
        children = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    for child in children:
        _writable(child)

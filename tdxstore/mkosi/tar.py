"""Make mkosi's root file system archive deterministic: re-pack it with members sorted by path.

mkosi 25.3 writes tar members in directory-walk order, which depends on the file system, so the same
tree can give different bytes. This re-packs an uncompressed tar in sorted order (PAX format), keeps
modes, owners and xattrs, clamps mtimes to SOURCE_DATE_EPOCH and drops atime/ctime. It never
extracts to disk, so owners and device nodes survive without root.
"""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from tdxstore.errors import ImageError

# PAX keys tarfile regenerates from the TarInfo fields (an old value would win over a new name).
_REGENERATED_PAX = frozenset({"path", "linkpath", "size", "uid", "gid", "uname", "gname",
                              "mtime", "atime", "ctime", "charset", "hdrcharset", "comment"})


def _key(name: str) -> tuple[str, ...]:
    """Sort key: path components, so a directory comes right before its contents."""
    return tuple(p for p in PurePosixPath(name.lstrip("/")).parts if p != ".")


def _normalised(info: tarfile.TarInfo, epoch: int | None) -> tarfile.TarInfo:
    new = copy.copy(info)
    new.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in _REGENERATED_PAX}
    new.mtime = int(info.mtime) if epoch is None else min(int(info.mtime), epoch)
    return new


Key = tuple[str, ...]


def _hardlink_roots(members: dict[Key, tarfile.TarInfo]) -> dict[Key, Key]:
    """Map every member of a hard-link group to the group's data-carrying member."""
    root: dict[Key, Key] = {}
    for key, info in members.items():
        if info.islnk():
            target = _key(info.linkname)
            while target in members and members[target].islnk():  # chains in odd archives
                target = _key(members[target].linkname)
            if target not in members:
                raise ImageError(f"tar member {info.name!r} is a hard link to missing {info.linkname!r}",
                                 code="bad-tar")
            root[key] = target
    return root


def sort_tar(src: Path, dest: Path, *, source_date_epoch: int | None = 0) -> Path:
    """Write `dest`: the members of the uncompressed tar `src`, sorted by path; returns `dest`.

    In each hard-link group the first member in sorted order carries the data and the others link
    to it, so links never point forward. Duplicate names keep the last occurrence, as tar does.
    """
    try:
        tin = tarfile.open(src, "r:")  # noqa: SIM115 (closed by the `with tin` below)
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"cannot read {src} as an uncompressed tar archive: {e}",
                         hint="build with CompressOutput=no", code="bad-tar") from e
    tmp = dest.with_name(f".{dest.name}.tmp")
    with tin:
        members = {_key(m.name): m for m in tin.getmembers()}
        roots = _hardlink_roots(members)
        emitted: dict[tuple[str, ...], str] = {}  # data-carrying root -> name it was written under
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tout:
            for key in sorted(members):
                info = members[key]
                name = "/".join(key) or "."
                root = roots.get(key, key if key in roots.values() else None)
                if root is not None and root in emitted:
                    link = _normalised(members[root], source_date_epoch)
                    link.name, link.type, link.linkname, link.size = name, tarfile.LNKTYPE, emitted[root], 0
                    tout.addfile(link)
                    continue
                data_info = members[root] if root is not None else info
                out = _normalised(data_info, source_date_epoch)
                out.name = name
                if root is not None:
                    emitted[root] = name
                if out.isreg():
                    with _extract(tin, data_info) as f:
                        tout.addfile(out, f)
                else:
                    tout.addfile(out)
    os.replace(tmp, dest)
    return dest


def _extract(tin: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    f = tin.extractfile(info)
    if f is None:
        raise ImageError(f"tar member {info.name!r} has no data", code="bad-tar")
    return f

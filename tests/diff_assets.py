"""Small real artifacts with one deliberate change each: tars (Python's tarfile, as mkosi's sorted tar),
initrds (GNU cpio newc, compressed by the zstd tool, as mkosi's) and UKIs (trixie's ukify, tests/measure_assets).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

MTIME = 1700000000
DPKG_STATUS = ("Package: base-files\nStatus: install ok installed\nVersion: 12.4\n\n"
               "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\n")


def tar_bytes(files: dict[str, bytes | str]) -> bytes:
    """A tar of regular files (str values are symlink targets), fixed owner and time, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = MTIME, 0o644
            if isinstance(data, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, data, 0o777
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cpio_bytes(root: Path, files: dict[str, bytes], *, compress: bool) -> bytes:
    """A newc archive made by GNU cpio from `files` written under `root`; zstd-compressed when asked."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MTIME, MTIME))
    names = "".join(f"{n}\n" for n in sorted(files)).encode()
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"], cwd=root, input=names,
                             capture_output=True, check=True).stdout
    if compress:
        archive = subprocess.run(["zstd", "-q", "-c", "-19"], input=archive, capture_output=True, check=True).stdout
    return archive

"""The seed root file system: a tiny busybox root made from Debian's busybox-static.

Copies the static `/bin/busybox` into `<dest>/bin`, links every applet it lists to it (relative
symlinks, so they resolve inside the sandbox), and adds the mount points the sandbox needs. The
sandbox tests and benchmarks build on it. It never touches the store; callers that need a store
path add it themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tdxstore.sandbox import add_mount_points, process

BUSYBOX = Path("/bin/busybox")


def busybox_available() -> bool:
    """Whether the host has a static busybox to build the root from."""
    return BUSYBOX.is_file()


def make_busybox_root(dest: Path) -> Path:
    """Populate `dest` with busybox, its applet links and the sandbox mount points; return `dest`."""
    bindir = dest / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    applets = process.run([BUSYBOX, "--list"], what="busybox --list").stdout.decode().split()
    for applet in applets:
        link = bindir / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    for alias in ("usr/bin", "sbin", "usr/sbin"):
        (dest / alias).parent.mkdir(parents=True, exist_ok=True)
        if not (dest / alias).exists():
            (dest / alias).symlink_to("/bin")
    (dest / "etc").mkdir(exist_ok=True)
    (dest / "etc" / "hostname").write_text("sandbox-root\n")
    add_mount_points(dest)
    return dest

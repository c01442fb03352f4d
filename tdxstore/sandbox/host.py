"""A sandbox for host tools that fixed-output builtins run (git): the host's /usr, nothing else (L1).

A fixed-output fetch may reach the network (its result is checked against the declared hash), but
it still should not see the user's home, configuration or environment, nor write anywhere but its
work directory. `host_tool_argv` wraps an argv in bubblewrap: /usr read-only (Debian's merged-/usr
links for /bin, /lib…), only the /etc files name resolution and TLS need, a private /tmp, the work
directory writable, the network shared. Pure: no file-system checks beyond `--ro-bind-try`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

#: /etc entries a networked tool needs: name resolution, TLS trust, user names.
HOST_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates",
            "/etc/passwd", "/etc/group")
MERGED_USR = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))


def host_tool_argv(argv: Sequence[str], *, bwrap: str, writable: Sequence[Path], readable: Sequence[Path] = (),
                   env: Mapping[str, str], cwd: Path, network: bool = True) -> list[str]:
    """`argv` run by bwrap with the host's /usr, the given directories, and `env` only."""
    out = [bwrap, "--unshare-all", *(["--share-net"] if network else []), "--die-with-parent",
           "--new-session", "--ro-bind", "/usr", "/usr"]
    for target, link in MERGED_USR:
        out += ["--symlink", target, link]
    for etc in HOST_ETC:
        out += ["--ro-bind-try", etc, etc]
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for d in sorted({os.path.abspath(p) for p in readable}):
        out += ["--ro-bind", d, d]
    for d in sorted({os.path.abspath(p) for p in writable}):
        out += ["--bind", d, d]
    out += ["--chdir", os.fspath(cwd), "--clearenv"]
    for k, v in sorted(env.items()):
        out += ["--setenv", k, v]
    return [*out, "--", *argv]

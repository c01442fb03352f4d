"""What a sandboxed build sees: `Mount` and `SandboxSpec`, frozen value objects (L1, stdlib only).

This module only describes a sandbox; it never touches the file system or spawns anything
(`bwrap.py` turns a spec into an argv, `run.py` runs it). Invariants once constructed: argv is
non-empty, every target is absolute and normalised, targets are unique, mounts are sorted by
target (parents before children) and the environment is a sorted tuple, so equal specs compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tdxstore.errors import SandboxError
from tdxstore.sandbox import BUILD_DIR, STORE_DIR

__all__ = ["BUILD_DIR", "RESERVED_TARGETS", "STORE_DIR", "Mount", "SandboxSpec"]

#: Targets the sandbox itself owns; a mount there would be hidden or would break the sandbox.
RESERVED_TARGETS = ("/", "/proc", "/dev", "/tmp", "/etc/passwd", "/etc/group", "/etc/hosts", STORE_DIR)

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_target(target: str, what: str) -> None:
    """A sandbox path must be absolute, normalised (no `.`, `..`, `//`, trailing `/`) and NUL-free."""
    if not isinstance(target, str) or not target.startswith("/"):
        raise SandboxError(f"{what} {target!r} is not an absolute path",
                           hint="sandbox paths start with '/'", code="sandbox-spec")
    parts = target.split("/")[1:]
    if target != "/" and any(p in ("", ".", "..") for p in parts):
        raise SandboxError(f"{what} {target!r} is not normalised (empty, '.' or '..' component)",
                           hint="write the path without '.', '..', '//' or a trailing '/'",
                           code="sandbox-spec")
    if "\0" in target:
        raise SandboxError(f"{what} {target!r} contains a NUL byte", code="sandbox-spec")


@dataclass(frozen=True, slots=True)
class Mount:
    """A host directory or file (`source`) made visible at `target` inside the sandbox."""

    source: Path
    target: str
    writable: bool = False

    def __post_init__(self) -> None:
        source = Path(self.source)
        if not source.is_absolute() or "\0" in str(source):
            raise SandboxError(f"mount source {str(source)!r} is not an absolute host path",
                               hint="pass the physical path of the store path or build directory",
                               code="sandbox-spec")
        object.__setattr__(self, "source", source)
        _check_target(self.target, "mount target")
        if self.target in RESERVED_TARGETS or self.target.startswith(("/proc/", "/dev/")):
            raise SandboxError(f"mount target {self.target!r} is reserved by the sandbox",
                               hint=f"mount store paths under {STORE_DIR}/ and the build dir at {BUILD_DIR}",
                               code="sandbox-spec")

    @property
    def depth_key(self) -> tuple[str, ...]:
        """Sort key: path components, so a parent directory is mounted before what is inside it."""
        return tuple(self.target.split("/")[1:])


def _freeze_env(env: Mapping[str, str] | Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = list(env.items()) if isinstance(env, Mapping) else [tuple(kv) for kv in env]
    names = [k for k, _ in items]
    if len(set(names)) != len(names):
        raise SandboxError("the sandbox environment names a variable twice", code="sandbox-spec")
    for name, value in items:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise SandboxError(f"environment variable name {name!r} is not valid",
                               hint="use letters, digits and '_', not starting with a digit",
                               code="sandbox-spec")
        if not isinstance(value, str) or "\0" in value:
            raise SandboxError(f"environment variable {name} must be a string without NUL bytes",
                               code="sandbox-spec")
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """Everything that decides what a build sees; `bwrap_argv` maps it to bubblewrap options.

    `root` is the physical directory of the root file system, bound read-only at `/`. `mounts`
    are the input store paths (read-only), the build directory (`/build`, writable) and the
    output's temporary physical directory at its logical store location (writable). `env` is the
    derivation's environment (a mapping is accepted and frozen into a sorted tuple of pairs).
    `timeout` bounds wall-clock seconds, `max_silent` seconds without any output.
    `usr_only` binds only `root`'s `/usr` (with Debian's merged-/usr links for /bin, /lib…) on an
    empty root instead of all of `root`: how a host tool (git in a fetch) runs with the host's
    programs and libraries but not its home, configuration or other files.
    """

    argv: tuple[str, ...]
    root: Path
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] | Sequence[tuple[str, str]] = field(default=())
    network: bool = False
    cwd: str = BUILD_DIR
    hostname: str = "localhost"
    uid: int = 1000
    gid: int = 100
    timeout: float | None = None
    max_silent: float | None = None
    cores: int = 1
    usr_only: bool = False

    def __post_init__(self) -> None:
        argv = tuple(self.argv)
        if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            raise SandboxError("the sandbox command (argv) is empty or not a list of strings",
                               hint="give the builder as argv, e.g. ('/bin/sh', '-e', 'builder.sh')",
                               code="sandbox-spec")
        if any("\0" in a for a in argv):
            raise SandboxError("a sandbox command argument contains a NUL byte", code="sandbox-spec")
        object.__setattr__(self, "argv", argv)
        root = Path(self.root)
        if not root.is_absolute():
            raise SandboxError(f"sandbox root {str(root)!r} is not an absolute host path",
                               hint="pass the physical path of the root file system's store path",
                               code="sandbox-spec")
        object.__setattr__(self, "root", root)
        self._freeze_mounts()
        object.__setattr__(self, "env", _freeze_env(self.env))
        _check_target(self.cwd, "working directory")
        self._check_scalars()

    def _freeze_mounts(self) -> None:
        mounts = tuple(self.mounts)
        if not all(isinstance(m, Mount) for m in mounts):
            raise SandboxError("sandbox mounts must be Mount objects", code="sandbox-spec")
        targets = [m.target for m in mounts]
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise SandboxError(f"two mounts share the target {dupes[0]!r}",
                               hint="each sandbox path can hold one mount", code="sandbox-spec")
        object.__setattr__(self, "mounts", tuple(sorted(mounts, key=lambda m: m.depth_key)))

    def _check_scalars(self) -> None:
        if not _HOSTNAME.match(self.hostname):
            raise SandboxError(f"sandbox hostname {self.hostname!r} is not a valid host name",
                               hint="use letters, digits and '-', at most 63 characters",
                               code="sandbox-spec")
        for name, value in (("uid", self.uid), ("gid", self.gid)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
                raise SandboxError(f"sandbox {name} {value!r} is not a valid id",
                                   hint="use an unprivileged id such as 1000 (uid) or 100 (gid)",
                                   code="sandbox-spec")
        for name, limit in (("timeout", self.timeout), ("max_silent", self.max_silent)):
            if limit is not None and not limit > 0:
                raise SandboxError(f"sandbox {name} must be a positive number of seconds, not {limit!r}",
                                   hint="use None for no limit", code="sandbox-spec")
        if isinstance(self.cores, bool) or not isinstance(self.cores, int) or self.cores < 1:
            raise SandboxError(f"sandbox cores must be a positive integer, not {self.cores!r}",
                               code="sandbox-spec")

    @property
    def environment(self) -> dict[str, str]:
        """The derivation's environment as a dict (a copy)."""
        return dict(self.env_items)

    @property
    def env_items(self) -> tuple[tuple[str, str], ...]:
        """The derivation's environment as sorted (name, value) pairs."""
        env = self.env
        assert isinstance(env, tuple)  # frozen by __post_init__
        return env

    def mount_at(self, target: str) -> Mount | None:
        """The mount whose target is exactly `target`, if any."""
        return next((m for m in self.mounts if m.target == target), None)

    def physical(self, path: str) -> Path:
        """Where a sandbox path lives on the host: the innermost mount covering it, else the root."""
        pure = PurePosixPath(path)
        for m in reversed(self.mounts):
            target = PurePosixPath(m.target)
            if pure == target or target in pure.parents:
                return m.source / pure.relative_to(target)
        return self.root / pure.relative_to("/")

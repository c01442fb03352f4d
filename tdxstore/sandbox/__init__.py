"""The bubblewrap sandbox and the one process runner (L1).

`SandboxSpec` describes a build's view of the world, `bwrap_argv` turns it into a bwrap command
line (pure), `run_sandboxed` runs it with time limits and streams its log. Nothing here knows
about derivations or the store database; callers map store paths to `Mount`s. The names below are
imported on first use (PEP 562): `store.path` needs only `STORE_DIR`, and every `tdx` start-up
would otherwise import the runner (subprocess, selectors, signal) too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdxstore.sandbox.bwrap import bwrap_argv, etc_files, sandbox_env
    from tdxstore.sandbox.run import (
        NETWORK_MOUNT_POINTS,
        ROOT_MOUNT_POINTS,
        SandboxResult,
        add_mount_points,
        check_bwrap,
        check_spec_paths,
        run_sandboxed,
        run_unsandboxed,
        supervise,
    )
    from tdxstore.sandbox.spec import Mount, SandboxSpec

#: Where store paths appear inside the sandbox (a read-only tmpfs holding only the mounts). Defined
#: here, not in `spec`, so that `store.path` gets it without building spec's classes.
STORE_DIR = "/tdx/store"
#: The build directory inside the sandbox (cwd, TMPDIR).
BUILD_DIR = "/build"

_HOME = {
    "bwrap_argv": "bwrap", "etc_files": "bwrap", "sandbox_env": "bwrap",
    "NETWORK_MOUNT_POINTS": "run", "ROOT_MOUNT_POINTS": "run", "SandboxResult": "run", "add_mount_points": "run",
    "check_bwrap": "run", "check_spec_paths": "run", "run_sandboxed": "run", "run_unsandboxed": "run",
    "supervise": "run",
    "Mount": "spec", "SandboxSpec": "spec",
}

__all__ = [
    "BUILD_DIR",
    "NETWORK_MOUNT_POINTS",
    "ROOT_MOUNT_POINTS",
    "STORE_DIR",
    "Mount",
    "SandboxResult",
    "SandboxSpec",
    "add_mount_points",
    "bwrap_argv",
    "check_bwrap",
    "check_spec_paths",
    "etc_files",
    "run_sandboxed",
    "run_unsandboxed",
    "sandbox_env",
    "supervise",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value

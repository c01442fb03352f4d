"""The bubblewrap sandbox and the one process runner (L1).

`SandboxSpec` describes a build's view of the world, `bwrap_argv` turns it into a bwrap command
line (pure), `run_sandboxed` runs it with time limits and streams its log. Nothing here knows
about derivations or the store database; callers map store paths to `Mount`s.
"""

from __future__ import annotations

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
from tdxstore.sandbox.spec import BUILD_DIR, STORE_DIR, Mount, SandboxSpec

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

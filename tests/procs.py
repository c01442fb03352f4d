"""Finding test processes by a marker in their command line (for kill and leftover checks)."""

from __future__ import annotations

from pathlib import Path


def pids_with(marker: str) -> list[int]:
    """The pids whose /proc/PID/cmdline contains `marker` (processes that vanish meanwhile are skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found

"""The deep report: Debian's diffoscope over two artifacts, where it is installed (after our own summary).

Runs diffoscope through the one process runner, text output only, size-limited; never required: when
diffoscope is absent the caller gets None and says so. Its exit status 1 means "differences found", not
failure; anything else is reported with its stderr, never raised over the summary already made.
"""

from __future__ import annotations

import os
from pathlib import Path

from tdxstore.errors import CommandError
from tdxstore.sandbox import process

MAX_REPORT = 256 << 10  # bytes of diffoscope text kept
TIMEOUT = 900.0


def available() -> bool:
    return process.which("diffoscope", process.host_env()["PATH"]) is not None


def diffoscope(a: Path, b: Path) -> str | None:
    """diffoscope's text report of `a` against `b`, or None when diffoscope is not installed."""
    if not available():
        return None
    argv = ["diffoscope", "--text", "-", "--no-progress", "--exclude-directory-metadata", "yes",
            "--max-text-report-size", str(MAX_REPORT), os.fspath(a), os.fspath(b)]
    try:
        done = process.run(argv, env=process.host_env({"TZ": "UTC", "LC_ALL": "C.UTF-8"}), check=False,
                           timeout=TIMEOUT, what="diffoscope")
    except CommandError as e:
        return f"(diffoscope did not report: {e.message})\n"
    if done.returncode == 0:
        return "diffoscope: no differences\n"
    text = done.stdout.decode("utf-8", "replace")[:MAX_REPORT]
    if done.returncode != 1:
        text += f"\n(diffoscope exited with status {done.returncode}: " \
                f"{done.stderr.decode('utf-8', 'replace').strip()[-400:]})\n"
    return text

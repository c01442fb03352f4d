"""Telling the user's code from ours (L0, stdlib only): for call sites and user tracebacks.

A frame is "ours" when its file lies in the tdxstore or tdx packages; Python's own machinery for
running a file (`<frozen …>` frames, runpy) is noise to the user too. Everything else, including
standard-library frames the user's code called into, is theirs and is kept.
"""

from __future__ import annotations

import runpy
import traceback
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_OWN_DIRS = (str(_PACKAGE_DIR), str(_PACKAGE_DIR.parent / "tdx"))
_RUNNER_FILES = (str(Path(runpy.__file__).resolve()),)


def is_own_file(filename: str) -> bool:
    """True when `filename` belongs to the tdxstore or tdx packages."""
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    return any(resolved == d or resolved.startswith(d + "/") for d in _OWN_DIRS)


def _is_noise(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    return is_own_file(filename) or str(Path(filename).resolve()) in _RUNNER_FILES


def user_traceback(error: BaseException, *, with_exception: bool = True) -> str:
    """The traceback of `error` restricted to the user's frames, formatted like Python's.

    `with_exception=False` leaves out the final exception line (our own errors show their message anyway).
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not _is_noise(f.filename)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    if with_exception:
        lines += traceback.format_exception_only(error)
    return "".join(lines).rstrip()

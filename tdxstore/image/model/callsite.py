"""Call sites: where in the user's code (TDXfile or module) an Image method was called.

Conflict errors name both call sites, so every recorded declaration carries one. A call site is the
first stack frame outside the tdxstore and tdx packages; it never includes our own frames.
Pure: inspects the interpreter stack only, never the file system.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tdxstore._usercode import is_own_file


@dataclass(frozen=True, slots=True)
class CallSite:
    """A `file:line` in user code; `file` is the path as Python reported it."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def relative_to(self, directory: Path) -> str:
        """`file:line` with `file` relative to `directory` when inside it, else its base name.

        Used in generated files so that they do not depend on where the project is checked out.
        """
        path = Path(self.file)
        try:
            shown = path.resolve().relative_to(directory.resolve()).as_posix()
        except ValueError:
            shown = path.name
        return f"{shown}:{self.line}"



def caller_site() -> CallSite:
    """The innermost stack frame that is not ours (`<unknown>:0` if there is none)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_own_file(filename):
            return CallSite(filename, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return CallSite("<unknown>", 0)

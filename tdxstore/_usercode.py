"""Running the user's Python (the one runner, for TDXfiles and derivation files) and telling it from ours.

`run_user_file` executes a file like a script with extra import roots, restores `sys.path` and drops
the modules imported from those roots, so two runs never share state; a failure becomes the
caller's error class with the user's traceback. A frame is "ours" when its file lies in the
tdxstore or tdx packages; Python's machinery for running a file (`<frozen …>`, runpy) is noise too.
"""

from __future__ import annotations

import builtins
import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdxstore.errors import TdxError

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
    if filename.startswith("<frozen ") or filename == "<string>":  # <string>: a dataclass's generated __init__
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


def run_user_file(path: Path, *, import_roots: Sequence[Path], run_name: str, label: str,
                  error: type[TdxError], code: str, hint: str | None = None) -> dict[str, Any]:
    """Execute the user's Python file `path` with `import_roots` first on sys.path; its globals.

    `label` names the file in messages; a syntax error or an exception becomes `error(…, code=code)`
    whose detail is the user's traceback. Our own TdxErrors keep their code and get that traceback.
    """
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {path}: {e}", hint="it must be UTF-8 Python source", code=code) from e
    try:
        compiled = compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as e:
        raise error(f"{label} has a syntax error at line {e.lineno}: {e.msg}", hint="fix the Python syntax",
                    detail="".join(traceback.format_exception_only(e)).rstrip(), code=code) from e
    namespace: dict[str, Any] = {"__name__": run_name, "__file__": str(path), "__builtins__": builtins}
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    sys.path[:0] = [str(p) for p in import_roots]
    try:
        exec(compiled, namespace)
    except TdxError as e:
        if e.detail is None:
            e.detail = user_traceback(e, with_exception=False)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: a user file calling sys.exit() is the user's error
        raise error(f"{label} raised {type(e).__name__}: {e}", hint=hint, detail=user_traceback(e),
                    code=code) from e
    finally:
        sys.path[:] = saved_path
        _forget_modules(saved_modules, import_roots)
    return namespace


def _forget_modules(before: set[str], roots: Sequence[Path]) -> None:
    """Drop modules imported from the user's directories so the next run re-imports them."""
    prefixes = tuple(str(r) + "/" for r in roots)
    for name in set(sys.modules) - before:
        filename = getattr(sys.modules[name], "__file__", None) or ""
        if filename.startswith(prefixes):
            del sys.modules[name]

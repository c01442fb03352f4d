"""Evaluate a TDXfile (plain Python) and return the `Image` it defines.

The TDXfile runs like a script (runpy-like) with its directory and each `modules/*/` local package
on sys.path, both removed again afterwards together with the modules imported from there, so two
loads never share state. Failures become ImageError "tdxfile-error" whose detail is the USER's
traceback (frames of the TDXfile and its modules, never ours). It never builds anything.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdxstore._usercode import user_traceback
from tdxstore.errors import ImageError, TdxError
from tdxstore.image.image import LOADING, Image, LoadContext

TDXFILE_NAME = "TDXfile"


def find_tdxfile(path: Path) -> Path:
    """`path` itself, or `path/TDXfile` for a directory; it must exist."""
    candidate = path / TDXFILE_NAME if path.is_dir() else path
    if not candidate.is_file():
        raise ImageError(f"no TDXfile at {candidate}", hint="pass the path of a TDXfile or of its directory",
                         code="tdxfile-not-found")
    return candidate.resolve()


def load_tdxfile(path: Path | str, import_paths: Sequence[Path] = ()) -> Image:
    """Run the TDXfile at `path` and return its Image (a module-level `image`, or the only one made).

    `import_paths` (the locked modules' store paths) go first on sys.path, before the project's own.
    """
    tdxfile = find_tdxfile(Path(path))
    directory = tdxfile.parent
    try:
        source = tdxfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImageError(f"cannot read {tdxfile}: {e}", hint="a TDXfile is UTF-8 Python source",
                         code="tdxfile-error") from e
    try:
        code = compile(source, str(tdxfile), "exec", dont_inherit=True)
    except SyntaxError as e:
        raise ImageError(f"{tdxfile} has a syntax error at line {e.lineno}: {e.msg}",
                         hint="fix the Python syntax", code="tdxfile-error",
                         detail="".join(traceback.format_exception_only(e)).rstrip()) from e
    namespace: dict[str, Any] = {"__name__": "__tdxfile__", "__file__": str(tdxfile),
                                 "__builtins__": builtins}
    context = LoadContext(directory)
    added = [*import_paths, *_import_roots(directory)]
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    sys.path[:0] = [str(p) for p in added]
    token = LOADING.set(context)
    try:
        exec(code, namespace)
    except TdxError as e:
        # Our own errors (conflicts, missing src=) keep their code; the user's traceback is added.
        if e.detail is None:
            e.detail = user_traceback(e, with_exception=False)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: a TDXfile calling sys.exit() is a TDXfile error
        raise ImageError(f"{tdxfile} raised {type(e).__name__}: {e}",
                         hint="fix the TDXfile or the module named in the traceback",
                         detail=user_traceback(e), code="tdxfile-error") from e
    finally:
        LOADING.reset(token)
        sys.path[:] = saved_path
        _forget_modules(saved_modules, added)
    return _pick_image(namespace, context, tdxfile)


def _import_roots(directory: Path) -> list[Path]:
    """The TDXfile's directory, then every `modules/<name>/` directory in sorted order."""
    modules = directory / "modules"
    local = sorted(p for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    return [directory, *local]


def _forget_modules(before: set[str], roots: list[Path]) -> None:
    """Drop modules imported from the project's directories so the next load re-imports them."""
    prefixes = tuple(str(r) + "/" for r in roots)
    for name in set(sys.modules) - before:
        filename = getattr(sys.modules[name], "__file__", None) or ""
        if filename.startswith(prefixes):
            del sys.modules[name]


def _pick_image(namespace: dict[str, Any], context: LoadContext, tdxfile: Path) -> Image:
    candidate = namespace.get("image")
    if isinstance(candidate, Image):
        return candidate
    if len(context.created) == 1:
        return context.created[0]
    if not context.created:
        raise ImageError(f"{tdxfile} does not create an Image",
                         hint='add: image = Image("my-image", base="debian/bookworm")', code="tdxfile-error")
    names = ", ".join(repr(i.name) for i in context.created)
    raise ImageError(f"{tdxfile} creates several Images ({names}) and no module-level `image`",
                     hint="assign the one to build to a variable named `image`", code="tdxfile-error")


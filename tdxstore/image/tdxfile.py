"""Evaluate a TDXfile (plain Python) and return the `Image` it defines.

The TDXfile runs through the one runner of user Python (`tdxstore._usercode.run_user_file`) with
its directory and each `modules/*/` local package on sys.path, both removed again afterwards
together with the modules imported from there, so two loads never share state. Failures become
ImageError "tdxfile-error" whose detail is the USER's
traceback (frames of the TDXfile and its modules, never ours). It never builds anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdxstore._usercode import run_user_file
from tdxstore.errors import ImageError
from tdxstore.image.model.image import LOADING, Image, LoadContext

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
    context = LoadContext(tdxfile.parent)
    token = LOADING.set(context)
    try:
        namespace = run_user_file(tdxfile, import_roots=[*import_paths, *_import_roots(tdxfile.parent)],
                                  run_name="__tdxfile__", label=str(tdxfile), error=ImageError,
                                  code="tdxfile-error", hint="fix the TDXfile or the module named in the traceback")
    finally:
        LOADING.reset(token)
    return _pick_image(namespace, context, tdxfile)


def _import_roots(directory: Path) -> list[Path]:
    """The TDXfile's directory, then every `modules/<name>/` directory in sorted order."""
    modules = directory / "modules"
    local = sorted(p for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    return [directory, *local]


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


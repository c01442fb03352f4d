"""Files placed in the image: `Image.file()` content and rendered `Image.template()` output.

A `FileEntry` holds the final bytes (read or rendered when the call is made, so a missing `src=` or a
missing template variable fails at the user's call site) plus mode and ownership. It never writes
anything; render.py places the bytes under `mkosi.extra/` and fixes modes/owners in a postinst script.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from tdxstore.errors import ImageError
from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file in the image: absolute `dest`, its bytes, mode and owner; `origin` says where it came from."""

    dest: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    origin: str = "content"
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _validate.image_path(self.dest, "file destination"))
        if not isinstance(self.content, bytes):
            raise ImageError(f"content of {self.dest} is {type(self.content).__name__}, not bytes",
                             hint="pass str or bytes as content=", code="invalid-value")
        object.__setattr__(self, "mode", _validate.file_mode(self.mode, f"mode of {self.dest}"))
        _validate.account_name(self.owner, f"owner of {self.dest}")
        _validate.account_name(self.group, f"group of {self.dest}")

    @property
    def needs_fixup(self) -> bool:
        """True when the file needs chown/chmod after mkosi copied it (not root:root 0644)."""
        return (self.owner, self.group, self.mode) != ("root", "root", 0o644)


def resolve_source(src: str | Path, directory: Path, what: str) -> Path:
    """`src` as an absolute path (relative ones against `directory`); it must be an existing file."""
    path = Path(src)
    if not path.is_absolute():
        path = directory / path
    if not path.exists():
        raise ImageError(f"{what} {str(src)!r} does not exist (looked at {path})",
                         hint="relative src= paths are resolved against the TDXfile's directory",
                         code="missing-source")
    if not path.is_file():
        raise ImageError(f"{what} {str(src)!r} is not a regular file ({path})",
                         hint="src= names one file; add directories file by file or with a build",
                         code="missing-source")
    return path


def read_source(src: str | Path, directory: Path) -> tuple[bytes, str]:
    """Bytes of a `src=` file and its resolved path as text."""
    path = resolve_source(src, directory, "src")
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise ImageError(f"cannot read src {str(src)!r}: {e.strerror}", hint="check the file's permissions",
                         code="missing-source") from e


def render_template(src: str | Path, directory: Path, variables: Mapping[str, Any]) -> tuple[bytes, str]:
    """Render a jinja2 template strictly: every variable it uses must be in `variables`.

    Includes and imports resolve next to the template. Returns the UTF-8 bytes and the template path.
    """
    path = resolve_source(src, directory, "template")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        text = path.read_text(encoding="utf-8")
        missing = sorted(jinja2.meta.find_undeclared_variables(env.parse(text)) - set(variables)
                         - set(env.globals))
        if missing:
            raise _undefined(missing, path)
        rendered = env.from_string(text).render(**dict(variables))
    except jinja2.UndefinedError as e:
        match = re.search(r"'([^']+)' is undefined", str(e))
        raise _undefined([match.group(1) if match else str(e)], _failing_template(e, path)) from e
    except jinja2.TemplateSyntaxError as e:
        raise ImageError(f"template {path} has a syntax error at line {e.lineno}: {e.message}",
                         hint="fix the jinja2 syntax", code="template-syntax") from e
    except UnicodeDecodeError as e:
        raise ImageError(f"template {path} is not UTF-8 text", hint="templates must be UTF-8",
                         code="template-syntax") from e
    return rendered.encode("utf-8"), str(path)


def _failing_template(error: BaseException, path: Path) -> Path:
    """The template (maybe an included one) whose code raised: jinja2 maps its frames to template files."""
    frames = [Path(f.filename) for f in traceback.extract_tb(error.__traceback__)]
    inside = [f for f in frames if path.parent in f.parents and f.is_file()]
    return inside[-1] if inside else path


def _undefined(names: list[str], path: Path) -> ImageError:
    listed = ", ".join(repr(n) for n in names)
    return ImageError(f"template {path} uses undefined variable {listed}",
                      hint=f"pass {listed} in vars= (templates are rendered with StrictUndefined)",
                      code="template-undefined")

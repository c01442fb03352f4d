"""Shared validation helpers for the Image value objects (private to tdxstore.image).

Each helper returns the normalised value or raises ImageError with a stable code; none touches
the file system. Paths inside the image are absolute POSIX paths without `.`/`..` segments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tdxstore.errors import ImageError

_NAME = re.compile(r"^[a-z_][a-z0-9_-]*[$]?$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+$")
# apt's syntax: name[:arch][=version | /suite] (a version pins it; a suite picks e.g. backports)
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+|/[a-z0-9-]+)?$")


def image_path(value: str, what: str) -> str:
    """An absolute path inside the image, normalised (`//` collapsed, no trailing `/`)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ImageError(f"{what} {value!r} is not an absolute path inside the image",
                         hint="write it as an absolute path, e.g. '/etc/app/config.toml'",
                         code="invalid-path")
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\0" in value or "\n" in value:
        raise ImageError(f"{what} {value!r} contains '.', '..', a NUL or a newline",
                         hint="write the plain absolute path", code="invalid-path")
    if not parts:
        raise ImageError(f"{what} {value!r} names the root directory", hint="name a file below '/'",
                         code="invalid-path")
    return "/" + "/".join(parts)


def account_name(value: str, what: str) -> str:
    """A user or group name as useradd accepts it (lower case, at most 32 characters)."""
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > 32:
        raise ImageError(f"{what} {value!r} is not a valid user or group name",
                         hint="use lower-case letters, digits, '_' and '-', starting with a letter or '_'",
                         code="invalid-name")
    return value


def unit_name(value: str, what: str) -> str:
    """A systemd unit name stem (without the `.service` suffix)."""
    if not isinstance(value, str) or not _UNIT_NAME.match(value) or value.endswith(".service"):
        raise ImageError(f"{what} {value!r} is not a valid systemd unit name",
                         hint="use letters, digits and ':_.@-', without the '.service' suffix",
                         code="invalid-name")
    return value


def package_name(value: str) -> str:
    """A Debian package name, optionally with `:arch` and `=version` or `/suite`."""
    if not isinstance(value, str) or not _PACKAGE.match(value):
        raise ImageError(f"{value!r} is not a valid Debian package name",
                         hint="package names are lower case: letters, digits and '+.-'",
                         code="invalid-package")
    return value


def file_mode(value: int | str, what: str) -> int:
    """A permission mode given as an int (0o644) or an octal string ('0644')."""
    mode: int
    if isinstance(value, bool):
        mode = -1
    elif isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        mode = int(value, 8)
    else:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise ImageError(f"{what} {value!r} is not a file mode",
                         hint="write it as an octal int (0o644) or an octal string ('0644')",
                         code="invalid-mode")
    return mode


def one_line(value: str, what: str) -> str:
    """A non-empty string without newlines or NUL (it goes into a unit file or a script line)."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\0" in value:
        raise ImageError(f"{what} {value!r} must be a non-empty single line",
                         hint="remove newlines; split long commands into several calls",
                         code="invalid-value")
    return value


def string_list(values: Iterable[str] | str | None, what: str) -> tuple[str, ...]:
    """A list of single-line strings; a lone string is accepted as a one-element list."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(one_line(v, what) for v in values)

"""The secrets manifest baked into an image, and the `secrets.env` file a user pushes from (L2).

The manifest holds declarations only (name, destination, owner, group, mode), never a value; its
text is deterministic (sorted by name) so the image stays reproducible.
`parse_env` reads values into memory and never quotes one in an error: errors name a line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import SecretError

MANIFEST_PATH = "/usr/lib/tdx-secrets/manifest.txt"
AGENT_PATH = "/usr/lib/tdx-secrets/tdx-secrets-agent"
DEFAULT_DIR = "/run/secrets"  # tmpfs: an undeclared destination is gone at power-off
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SecretEntry:
    """One declared secret as the agent sees it; `dest` is absolute inside the guest."""

    name: str
    dest: str
    owner: str = "root"
    group: str | None = None
    mode: int = 0o400
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SecretError(f"secret name {self.name!r} is not an identifier", code="invalid-name")
        parts = self.dest.split("/")
        if not self.dest.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]) or \
                any(c in self.dest for c in "\0\t\n"):
            raise SecretError(f"destination {self.dest!r} of secret {self.name} is not a plain absolute path",
                              hint="write it as e.g. '/etc/app/api-key', without '..'", code="invalid-path")
        if not 0 <= self.mode <= 0o7777:
            raise SecretError(f"mode {self.mode:o} of secret {self.name} is not a file mode", code="invalid-value")


def default_dest(name: str) -> str:
    return f"{DEFAULT_DIR}/{name}"


def manifest_json(entries: tuple[SecretEntry, ...], delivery: str) -> bytes:
    """The manifest file (agent.py's `load_manifest` reads it): version, delivery, entries by name."""
    lines = ["tdx-secrets 1", f"delivery {delivery}"]
    lines += ["\t".join(("secret", e.name, e.dest, e.owner, e.group or "", f"{e.mode:04o}"))
              for e in sorted(entries, key=lambda e: e.name)]
    return ("\n".join(lines) + "\n").encode()


def parse_env(path: Path) -> dict[str, bytes]:
    """`NAME=value` or `NAME=@file` lines; `#` comments and blank lines are skipped.

    A value is taken verbatim after the first '='; `@file` is relative to the secrets file's directory.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(f"secrets file {str(path)!r} does not exist", code="secrets-file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"secrets file {str(path)!r} cannot be read as UTF-8 text",
                          detail=type(e).__name__, code="secrets-file") from None
    out: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        where = f"{path}:{number}"
        if not sep or not _NAME.match(name):
            raise SecretError(f"{where}: expected NAME=value or NAME=@file", code="secrets-syntax",
                              hint="names are identifiers such as API_KEY; the value follows the first '='")
        if name in out:
            raise SecretError(f"{where}: {name} is given twice", code="secrets-syntax")
        if value.startswith("@"):
            source = path.parent / value[1:]
            try:
                data = source.read_bytes()
            except OSError as e:
                raise SecretError(f"{where}: {name}'s file {str(source)!r} cannot be read ({e.strerror})",
                                  code="secrets-file") from None
        else:
            data = value.encode()
        if not data:
            raise SecretError(f"{where}: {name} has an empty value", code="empty-value",
                              hint="give it a value or remove the line")
        out[name] = data
    return out

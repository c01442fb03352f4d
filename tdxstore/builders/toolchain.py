"""Declared toolchains (L4): a compiler made from pinned Debian packages, named before it exists.

A `DebianToolchain` only records which packages to resolve and which directory of them to keep; the
composing layer locks it in tdx.lock's `[build-root]` section, realises it (`packages/toolchain.py`)
and hands the builder the store path. Nothing here resolves, downloads or looks at the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tdxstore.errors import BuildError

_REQUEST = re.compile(r"^[a-z0-9][a-z0-9+.-]+(/[a-z0-9.-]+)?$")
#: Debian's Go toolchains: the apt request and the GOROOT the package installs (FINDINGS.md: "Go binaries").
DEBIAN_GO = {v: (f"golang-{v}-go/bookworm-backports", f"/usr/lib/go-{v}") for v in ("1.21", "1.22", "1.23")}


@dataclass(frozen=True, slots=True)
class DebianToolchain:
    """`prefix` of the unpacked closure of `packages` (apt requests), as a store path named `name`."""

    packages: tuple[str, ...]
    prefix: str
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(sorted(self.packages)))
        if not self.packages or not all(isinstance(p, str) and _REQUEST.match(p) for p in self.packages):
            raise BuildError(f"toolchain {self.name!r}: {list(self.packages)!r} are not apt requests",
                             hint="write 'name' or 'name/suite', e.g. 'golang-1.22-go/bookworm-backports'",
                             code="invalid-build")
        if not self.prefix.startswith("/") or ".." in self.prefix.split("/"):
            raise BuildError(f"toolchain {self.name!r}: prefix {self.prefix!r} is not an absolute path",
                             hint="name the directory the packages install, e.g. /usr/lib/go-1.22",
                             code="invalid-build")


def debian_go(version: str) -> DebianToolchain:
    """Debian's Go `version` (1.21, 1.22, 1.23 from bookworm-backports) as a `compiler=` for GoBuild."""
    if version not in DEBIAN_GO:
        raise BuildError(f"Debian ships no Go {version!r} for bookworm (it has {', '.join(sorted(DEBIAN_GO))})",
                         hint="use one of those, or pass compiler= a store path holding a GOROOT",
                         code="go-version-unpinned")
    request, goroot = DEBIAN_GO[version]
    return DebianToolchain((request,), goroot, f"go-{version}")

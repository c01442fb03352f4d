"""`Build.script()` (spec §4.6): a custom build recorded as a value object.

Record only: name, source directory, build command, artifacts, build dependencies and output. It does
not resolve `src` (the integrator resolves relative sources against the image's directory), fetch,
or build; it validates on construction so a bad declaration fails at the user's call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tdxstore.errors import BuildError

_NAME = re.compile(r"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*$")  # a valid store path name
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def _error(message: str, hint: str) -> BuildError:
    return BuildError(message, hint=hint, code="invalid-build")


@dataclass(frozen=True, slots=True)
class ScriptBuild:
    """A shell-script build: run `build_script` in `src`; install `artifacts` {build path: image path}."""

    name: str
    src: str
    build_script: str
    artifacts: tuple[tuple[str, str], ...] = ()
    build_deps: tuple[str, ...] = ()
    output: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or len(self.name) > 211:
            raise _error(f"build name {self.name!r} is not a valid store path name",
                         "use letters, digits and '+-._?=', not starting with '.'")
        if not isinstance(self.src, str) or not self.src:
            raise _error(f"src of build {self.name!r} is empty",
                         "pass the source directory, e.g. src='./app/'")
        if not isinstance(self.build_script, str) or not self.build_script.strip():
            raise _error(f"build_script of build {self.name!r} is empty", "pass the command that builds it")
        for built, dest in self.artifacts:
            if built.startswith("/") or ".." in built.split("/") or not built:
                raise _error(f"artifact {built!r} of build {self.name!r} is not a relative path",
                             "write e.g. 'build/my-tool'")
            if not dest.startswith("/"):
                raise _error(f"artifact destination {dest!r} of build {self.name!r} is not absolute",
                             "write e.g. '/usr/local/bin/my-tool'")
        for dep in self.build_deps:
            if not _PACKAGE.match(dep):
                raise _error(f"build dependency {dep!r} of build {self.name!r} is not a Debian package name",
                             "use package names such as 'cmake' or 'libssl-dev'")
        if self.output is not None and not self.output.startswith("/"):
            raise _error(f"output {self.output!r} of build {self.name!r} is not an absolute image path",
                         "write e.g. '/usr/local/bin/my-app'")
        if not self.artifacts and self.output is None:
            raise _error(f"build {self.name!r} declares neither artifacts= nor output=",
                         "say what the build installs into the image")


class Build:
    """Namespace of build constructors (`Build.script(...)`); typed builders live in tdx.builders."""

    @staticmethod
    def script(name: str, src: str, build_script: str, artifacts: Mapping[str, str] | None = None,
               build_deps: Sequence[str] = (), output: str | None = None) -> ScriptBuild:
        """A custom build (spec §4.6)."""
        return ScriptBuild(name, str(src), build_script, tuple(sorted((artifacts or {}).items())),
                           tuple(build_deps), output)

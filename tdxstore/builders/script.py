"""`Build.script()` (spec §4.6, §10.4) and `CBuild` (§4.4): a shell build in the sandbox, as a derivation.

The value objects only record and validate. `script_derivation` adds `src` to the store (the files git
sees, `.gitignore` respected), then makes a derivation that runs offline on a build root supplied by
the caller (builders do not import `packages/`: the composing layer makes the root from
`root_packages`). `$out` holds the artifacts at their image paths; a missing one fails the build
naming it. The environment is a function of the declaration only (no host fact reaches it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store
from tdxstore.store.tree import copy_module_tree

_NAME = re.compile(r"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*$")  # a valid store path name
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
#: Packages every build root has (the same list as `tdxstore.packages.BUILD_ESSENTIAL`, checked by a test).
BUILD_ESSENTIAL = ("build-essential",)
#: Where the sandbox build copies the source (writable, under the sandbox's private /build).
BUILD_DIR = "/build/src"
#: The reproducibility environment every script build gets unless `reproducible=False`.
REPRODUCIBLE_ENV = {
    "SOURCE_DATE_EPOCH": "0",
    "CFLAGS": f"-O2 -ffile-prefix-map={BUILD_DIR}=. -fdebug-prefix-map={BUILD_DIR}=.",
    "CXXFLAGS": f"-O2 -ffile-prefix-map={BUILD_DIR}=. -fdebug-prefix-map={BUILD_DIR}=.",
    "LC_ALL": "C", "TZ": "UTC",
}

# $1 = source store path, then (built, image path) pairs; $BUILD_SCRIPT and $OUTPUT from the env.
_RUNNER = r"""
set -eu
src=$1; shift
cp -R "$src" "$BUILD_DIR"
chmod -R u+w "$BUILD_DIR"
cd "$BUILD_DIR"
export DESTDIR="$out"
# a writable home under the private /build (tools such as go keep caches there); nothing of it is kept
mkdir -p /build/home && export HOME=/build/home
/bin/sh -eu -c "$BUILD_SCRIPT"
cd "$BUILD_DIR"
while [ $# -gt 0 ]; do
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then
    echo "tdx: artifact '$1' (for '$2') was not produced by the build script" >&2; exit 66
  fi
  mkdir -p "$out$(dirname "$2")"
  cp -R "$1" "$out$2"
  shift 2
done
if [ -n "${OUTPUT:-}" ] && [ ! -e "$out$OUTPUT" ]; then
  echo "tdx: output '$OUTPUT' was not installed: the build script must write \$DESTDIR$OUTPUT" >&2; exit 66
fi
"""


def _error(message: str, hint: str, code: str = "invalid-build") -> BuildError:
    return BuildError(message, hint=hint, code=code)


@dataclass(frozen=True, slots=True)
class ScriptBuild:
    """A shell-script build: run `build_script` in `src`; install `artifacts` {build path: image path}."""

    name: str
    src: str
    build_script: str
    artifacts: tuple[tuple[str, str], ...] = ()
    build_deps: tuple[str, ...] = ()
    output: str | None = None
    reproducible: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or len(self.name) > 200:
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
            if not dest.startswith("/") or ".." in dest.split("/") or dest == "/":
                raise _error(f"artifact destination {dest!r} of build {self.name!r} is not an absolute file path",
                             "write e.g. '/usr/local/bin/my-tool'")
        dests = [d for _, d in self.artifacts] + ([self.output] if self.output else [])
        if len(set(dests)) != len(dests):
            raise _error(f"build {self.name!r} installs two things at the same image path",
                         "give each artifact its own destination")
        for dep in self.build_deps:
            if not _PACKAGE.match(dep):
                raise _error(f"build dependency {dep!r} of build {self.name!r} is not a Debian package name",
                             "use package names such as 'cmake' or 'libssl-dev'")
        if self.output is not None and (not self.output.startswith("/") or ".." in self.output.split("/")):
            raise _error(f"output {self.output!r} of build {self.name!r} is not an absolute image path",
                         "write e.g. '/usr/local/bin/my-app'")
        if not self.artifacts and self.output is None:
            raise _error(f"build {self.name!r} declares neither artifacts= nor output=",
                         "say what the build installs into the image")

    @property
    def root_packages(self) -> tuple[str, ...]:
        """The Debian packages its build root must hold: build-essential plus `build_deps`, sorted."""
        return tuple(sorted(set(BUILD_ESSENTIAL) | set(self.build_deps)))

    @property
    def image_paths(self) -> tuple[str, ...]:
        """The image paths it installs (artifact destinations and `output`)."""
        return tuple(sorted({d for _, d in self.artifacts} | ({self.output} if self.output else set())))

    def derivation_on(self, store: Store, root: Derivation | StorePath, *, base: Path | None = None) -> Derivation:
        """The derivation on build root `root` (holding `root_packages`); a relative `src` is taken from `base`."""
        return script_derivation(store, self, root, base=base)


def add_source(store: Store, src: str | Path, name: str, *, base: Path | None = None) -> StorePath:
    """Add the source tree `src` (relative to `base`) to the store: the files git sees, nothing else."""
    path = Path(src)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_dir():
        raise _error(f"source directory {str(path)!r} of build {name!r} does not exist",
                     "check src= (a relative src is taken from the TDXfile's directory)", code="source-missing")
    with store.temp_dir("build-src") as tmp:
        copy_module_tree(path, tmp / "src")
        return store.add_path(tmp / "src", f"{name}-src")


def script_derivation(store: Store, build: ScriptBuild, root: Derivation | StorePath, *,
                      base: Path | None = None, inputs: Sequence[Derivation | StorePath] = (),
                      env: Mapping[str, str] | None = None, src: StorePath | None = None) -> Derivation:
    """The derivation of `build` on the build root `root` (holding `build.root_packages`).

    `inputs` (e.g. a toolchain) are visible read-only at their store paths; `env` adds variables;
    `src` is the source already in the store (else `build.src` is added, relative to `base`).
    """
    src_sp = src if src is not None else add_source(store, build.src, build.name, base=base)
    full_env = dict(REPRODUCIBLE_ENV) if build.reproducible else {}
    full_env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "BUILD_DIR": BUILD_DIR,
                     "BUILD_SCRIPT": build.build_script})
    if build.output is not None:
        full_env["OUTPUT"] = build.output
    full_env.update(env or {})
    args = ["-c", _RUNNER, "tdx-build", src_sp.logical]
    for built, dest in build.artifacts:
        args += [built, dest]
    return derivation(build.name, "/bin/sh", args, env=full_env, root=root, inputs=[src_sp, *inputs],
                      timeout=6 * 3600)


class Build:
    """Namespace of build constructors (`Build.script(...)`); typed builders live in tdx.builders."""

    @staticmethod
    def script(name: str, src: str, build_script: str, artifacts: Mapping[str, str] | None = None,
               build_deps: Sequence[str] = (), output: str | None = None,
               reproducible: bool = True) -> ScriptBuild:
        """A custom build (spec §4.6)."""
        return ScriptBuild(name, str(src), build_script, tuple(sorted((artifacts or {}).items())),
                           tuple(build_deps), output, reproducible)

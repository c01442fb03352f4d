"""`GoBuild` (spec §4.1): a Go program built offline from a pinned toolchain and pinned modules.

Two derivations: the module cache (`go mod download`, fixed-output: its NAR hash is `modules_hash`,
the network is allowed and `go.sum` is the only verification of what the proxy served), then the
build (offline, `GOPROXY=off`, `GOFLAGS=-mod=readonly`, `GOTOOLCHAIN=local`, `-trimpath -buildid=`),
lowered to a script build on the caller's build root. The compiler is a store path holding a GOROOT
(`bin/go`), or a `GoFromSource` chain built on the seed; it is never looked up on the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tdxstore.builders.chain import compiler_of
from tdxstore.builders.gosource import GoFromSource
from tdxstore.builders.script import ScriptBuild, add_source, script_derivation
from tdxstore.builders.toolchain import DebianToolchain
from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation, FixedOutput, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: Official releases (go.dev/dl) by (version, arch): sha256 of the tarball. None is pinned yet: the
#: upstream URLs cannot be reached from where this was written, and a hash is never guessed.
OFFICIAL_RELEASES: dict[tuple[str, str], str] = {}
_REQUIRE = re.compile(r"^\s*require\b", re.MULTILINE)
_GOROOT_CHECK = 'test -x "$GOROOT/bin/go" || { echo "tdx: compiler $GOROOT holds no bin/go" >&2; exit 66; }\n'

_DOWNLOAD = r"""
set -eu
cp -R "$SRC" /build/src
chmod -R u+w /build/src
cd /build/src
export GOMODCACHE="$out"
""" + _GOROOT_CHECK + r"""
"$GOROOT/bin/go" mod download -x 2>&1
rm -rf "$GOMODCACHE/cache/download/sumdb" "$GOMODCACHE/cache/vcs"
find "$GOMODCACHE" -name '*.lock' -type f -delete
"""


def _error(message: str, hint: str, code: str) -> BuildError:
    return BuildError(message, hint=hint, code=code)


@dataclass(frozen=True, slots=True)
class GoBuild:
    """`go build` of `package` in `src`; the binary lands at the image path `output`."""

    src: str
    output: str
    compiler: Derivation | StorePath | GoFromSource | DebianToolchain | None = None
    version: str | None = None
    ldflags: str = ""
    package: str = "."
    modules_hash: str | None = None  # NAR SHA-256 (hex) of the `go mod download` cache
    goproxy: str = "https://proxy.golang.org"
    build_deps: tuple[str, ...] = ()
    name: str = ""
    cgo: bool = False
    reproducible: bool = True
    arch: str = "amd64"
    _modules: FixedOutput | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", str(self.src))
        object.__setattr__(self, "build_deps", tuple(self.build_deps))
        object.__setattr__(self, "name", self.name or Path(self.output).name)
        if self.compiler is None:
            if (self.version, self.arch) not in OFFICIAL_RELEASES:
                known = ", ".join(sorted(v for v, _ in OFFICIAL_RELEASES)) or "none"
                raise _error(f"Go {self.version or '(no version)'} for {self.arch} has no pinned release hash "
                             f"(pinned: {known})",
                             "pass compiler= a store path holding a GOROOT (a fetch() of a Go tarball, unpacked), "
                             "or Debian's Go: compiler=debian_go('1.22') (from tdx.builders.go)",
                             "go-version-unpinned")
            raise _error("official Go releases are not wired yet", "pass compiler=", "builder-unavailable")
        if not isinstance(self.compiler, Derivation | StorePath | GoFromSource | DebianToolchain):
            raise _error(f"compiler= of GoBuild is {type(self.compiler).__name__}, not a store path",
                         "pass a Derivation or StorePath holding bin/go, GoFromSource(...) or debian_go('1.22')",
                         "invalid-build")
        if self.modules_hash is not None:
            object.__setattr__(self, "_modules", FixedOutput(self.modules_hash, recursive=True))
        self.script  # noqa: B018 - validates name and output now, at the user's call

    @property
    def root_packages(self) -> tuple[str, ...]:
        """The Debian packages its build root must hold: build-essential plus `build_deps`, sorted."""
        return self.script.root_packages

    @property
    def image_paths(self) -> tuple[str, ...]:
        return (self.output,)

    def compiler_on(self, root: Derivation | StorePath) -> Derivation | StorePath:
        """The compiler as a store input on build root `root`.

        A `GoFromSource` becomes its chain's top derivation (built on its own `root=`, the seed, when it
        has one, else on this build's root); a Debian toolchain must have been realised into a store
        path first (`tdx build` / `tdx realise` lock and realise declared toolchains).
        """
        c = self.compiler
        if isinstance(c, GoFromSource):
            return compiler_of(c, root)
        if isinstance(c, DebianToolchain) or c is None:
            raise _error(f"the Debian toolchain {getattr(c, 'name', '?')!r} of Go build {self.name!r} "
                         "is not realised yet", "build it through `tdx build`/`tdx realise`, which lock and "
                         "realise declared toolchains", "toolchain-unrealised")
        return c

    def goroot_on(self, root: Derivation | StorePath) -> StorePath:
        compiler = self.compiler_on(root)
        return compiler.out if isinstance(compiler, Derivation) else compiler

    @property
    def script(self) -> ScriptBuild:
        flags = "-trimpath -buildvcs=false " if self.reproducible else ""
        ldflags = ("-buildid= " if self.reproducible else "") + self.ldflags
        cmd = (f'"$GOROOT/bin/go" build {flags}-ldflags "{ldflags.strip()}" -o "$DESTDIR{self.output}" '
               f"{self.package}")
        return ScriptBuild(self.name, self.src, _GOROOT_CHECK + cmd, (), self.build_deps, self.output,
                           self.reproducible)

    def modules_derivation(self, store: Store, src: StorePath, root: Derivation | StorePath) -> Derivation | None:
        """The fixed-output `go mod download` step, or None when go.mod requires nothing."""
        tree = store.real_path(src)
        gomod = tree / "go.mod"
        if not gomod.is_file():
            raise _error(f"src {self.src!r} of Go build {self.name!r} has no go.mod",
                         "run `go mod init <module>` in the source directory", "go-mod-missing")
        if not _REQUIRE.search(gomod.read_text(errors="replace")):
            return None
        if not (tree / "go.sum").is_file():
            raise _error(f"Go build {self.name!r} requires modules but {self.src!r} has no go.sum",
                         "run `go mod tidy` and commit go.sum: it is the only check of downloaded modules",
                         "go-sum-missing")
        if self._modules is None:
            raise _error(f"Go build {self.name!r} requires modules but declares no modules_hash=",
                         "pass modules_hash='0'*64 once: the hash-mismatch error then shows the hash of the "
                         "module cache that go.sum verified; pin that", "go-modules-unpinned")
        return derivation(f"{self.name}-go-modules", "/bin/sh", ["-c", _DOWNLOAD], root=root,
                          inputs=[src, self.compiler_on(root)], fixed=self._modules, timeout=3600,
                          env={"SRC": src.logical, "GOROOT": self.goroot_on(root).logical,
                               "GOPROXY": self.goproxy, "GOSUMDB": "off", "GOFLAGS": "-mod=mod -modcacherw",
                               "GOTOOLCHAIN": "local", "GOCACHE": "/build/gocache",
                               "PATH": "/usr/bin:/bin"})

    def derivation_on(self, store: Store, root: Derivation | StorePath, *, base: Path | None = None) -> Derivation:
        """The build derivation (with its module step as an input) on build root `root`."""
        src = add_source(store, self.src, self.name, base=base)
        modules = self.modules_derivation(store, src, root)
        inputs: list[Derivation | StorePath] = [self.compiler_on(root)]
        env = {"GOROOT": self.goroot_on(root).logical, "GOPROXY": "off", "GOFLAGS": "-mod=readonly",
               "GOTOOLCHAIN": "local", "GOSUMDB": "off", "GOCACHE": "/build/gocache", "GOPATH": "/build/gopath",
               "CGO_ENABLED": "1" if self.cgo else "0"}
        if modules is not None:
            inputs.append(modules)
            env["GOMODCACHE"] = modules.out.logical
        else:
            env["GOMODCACHE"] = "/build/gopath/pkg/mod"
        return script_derivation(store, self.script, root, inputs=inputs, env=env, src=src)

"""`DotnetBuild` (spec §4.3): `dotnet publish` offline, from a pinned SDK and a pinned NuGet restore.

Two derivations, as for Go: the restore (`dotnet restore`, fixed-output: its NAR hash is
`packages_hash`, the network is allowed and the project's lock file is what NuGet checks), then the
publish (offline: `--no-restore --source <restored packages>`, deterministic MSBuild properties) on the
caller's build root. The SDK is a store path holding `dotnet` (`compiler=`: a `fetch()` of the SDK
tarball, unpacked); none is pinned here because no registry reachable where tdx is built ships one
(FINDINGS.md), so without `compiler=` construction refuses. The commands are tested; no SDK ever ran.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tdxstore.builders.script import ScriptBuild, add_source, script_derivation
from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation, FixedOutput, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

HINT = ("no .NET SDK is pinned or obtainable from Debian or PyPI: pass compiler= a store path holding the "
        "SDK (fetch() the dotnet-sdk tarball with its sha256, unpacked), or publish outside tdx and add the "
        "result with image.file()")
#: What every `dotnet` invocation gets: no telemetry, no first-run work, no update check, invariant culture.
DOTNET_ENV = {"DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_SKIP_FIRST_TIME_EXPERIENCE": "1",
              "DOTNET_NOLOGO": "1", "DOTNET_CLI_HOME": "/build/home", "DOTNET_GENERATE_ASPNET_CERTIFICATE": "0",
              "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1", "MSBUILDDISABLENODEREUSE": "1"}
#: MSBuild properties that make the output independent of where and when it was built.
DETERMINISTIC = ("-p:Deterministic=true", "-p:ContinuousIntegrationBuild=true", "-p:PathMap=/build/src=.",
                 "-p:GenerateDocumentationFile=false")
_SDK_CHECK = 'test -x "$DOTNET_ROOT/dotnet" || { echo "tdx: compiler $DOTNET_ROOT holds no dotnet" >&2; exit 66; }\n'


def _error(message: str, hint: str, code: str) -> BuildError:
    return BuildError(message, hint=hint, code=code)


@dataclass(frozen=True, slots=True)
class DotnetBuild:
    """`dotnet publish` of `project` in `src`; the published directory lands at the image path `output`."""

    src: str
    project: str
    output: str
    sdk_version: str = ""
    compiler: Derivation | StorePath | None = None
    self_contained: bool = True
    runtime: str = "linux-x64"
    configuration: str = "Release"
    packages_hash: str | None = None  # NAR SHA-256 (hex) of the `dotnet restore` packages directory
    nuget_source: str = "https://api.nuget.org/v3/index.json"
    build_deps: tuple[str, ...] = ()
    name: str = ""
    reproducible: bool = True
    _packages: FixedOutput | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", str(self.src))
        object.__setattr__(self, "build_deps", tuple(self.build_deps))
        object.__setattr__(self, "name", self.name or PurePosixPath(self.output.rstrip("/")).name or "dotnet")
        if self.compiler is None:
            raise _error(f"DotnetBuild (tdx.builders.dotnet): no .NET SDK {self.sdk_version or '?'} is available "
                         "to build with", HINT, "dotnet-sdk-unavailable")
        if not isinstance(self.compiler, Derivation | StorePath):
            raise _error(f"compiler= of DotnetBuild is {type(self.compiler).__name__}, not a store path",
                         "pass a Derivation or StorePath holding the SDK (its `dotnet` at the top)", "invalid-build")
        if not self.project or PurePosixPath(self.project).is_absolute() or ".." in PurePosixPath(self.project).parts:
            raise _error(f"project= {self.project!r} of DotnetBuild must be a path inside src",
                         "name the project directory or .csproj relative to src", "invalid-build")
        if not self.output.startswith("/"):
            raise _error(f"output= {self.output!r} of DotnetBuild is not an absolute image path",
                         "e.g. output='/opt/app/'", "invalid-build")
        if self.packages_hash is not None:
            object.__setattr__(self, "_packages", FixedOutput(self.packages_hash, recursive=True))
        self.script  # noqa: B018 - validates name and output now, at the user's call

    @property
    def root_packages(self) -> tuple[str, ...]:
        """The Debian packages its build root must hold: build-essential plus `build_deps`, sorted."""
        return self.script.root_packages

    @property
    def image_paths(self) -> tuple[str, ...]:
        return (self.output.rstrip("/") or "/",)

    def restore_argv(self) -> list[str]:
        """`dotnet restore`, run by the fixed-output step with the network."""
        return ["dotnet", "restore", self.project, "--packages", "$out", "--runtime", self.runtime,
                "--source", self.nuget_source, "--locked-mode"]

    def publish_argv(self) -> list[str]:
        """`dotnet publish`, offline, from the restored packages only."""
        out = "$DESTDIR" + self.output.rstrip("/")
        argv = ["dotnet", "publish", self.project, "--configuration", self.configuration, "--runtime", self.runtime,
                "--self-contained", "true" if self.self_contained else "false", "--no-restore",
                "--source", "$NUGET_PACKAGES", "--output", out]
        return argv + list(DETERMINISTIC if self.reproducible else ())

    @property
    def script(self) -> ScriptBuild:
        cmd = _SDK_CHECK + 'PATH="$DOTNET_ROOT:$PATH"\n' + _shell(self.publish_argv())
        return ScriptBuild(self.name, self.src, cmd, (), self.build_deps, self.output.rstrip("/") or "/",
                           self.reproducible)

    def restore_derivation(self, src: StorePath, root: Derivation | StorePath) -> Derivation:
        """The fixed-output restore step; refused until `packages_hash` pins it."""
        if self._packages is None:
            raise _error(f"DotnetBuild {self.name!r} declares no packages_hash= for its NuGet restore",
                         "pass packages_hash='0'*64 once: the hash-mismatch error then shows the hash of the "
                         "restored packages; pin that (the project's packages.lock.json is what NuGet checks)",
                         "dotnet-packages-unpinned")
        script = ('set -eu\ncp -R "$SRC" /build/src\nchmod -R u+w /build/src\ncd /build/src\n' + _SDK_CHECK
                  + 'PATH="$DOTNET_ROOT:$PATH"\n' + _shell(self.restore_argv()) + "\n"
                  + 'find "$out" \\( -name "*.nupkg.metadata" -o -name ".nupkg.metadata" \\) -type f -delete\n')
        return derivation(f"{self.name}-nuget", "/bin/sh", ["-c", script], root=root, inputs=[src, self._sdk],
                          fixed=self._packages, timeout=3600,
                          env={**DOTNET_ENV, "SRC": src.logical, "DOTNET_ROOT": self._sdk_path.logical,
                               "HOME": "/build/home", "PATH": "/usr/bin:/bin"})

    def derivation_on(self, store: Store, root: Derivation | StorePath, *, base: Path | None = None) -> Derivation:
        """The publish derivation (with its restore step as an input) on build root `root`."""
        src = add_source(store, self.src, self.name, base=base)
        restore = self.restore_derivation(src, root)
        env = {**DOTNET_ENV, "DOTNET_ROOT": self._sdk_path.logical, "NUGET_PACKAGES": restore.out.logical}
        return script_derivation(store, self.script, root, inputs=[self._sdk, restore], env=env, src=src)

    @property
    def _sdk(self) -> Derivation | StorePath:
        assert self.compiler is not None
        return self.compiler

    @property
    def _sdk_path(self) -> StorePath:
        return self._sdk.out if isinstance(self._sdk, Derivation) else self._sdk


def _shell(argv: list[str]) -> str:
    """argv as one shell line; `$VAR` words stay expandable (quoted with double quotes), the rest literal."""
    return " ".join(f'"{a}"' if a.startswith("$") else shlex.quote(a) for a in argv)

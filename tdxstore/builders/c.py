"""`CBuild` (spec §4.4): a C/C++ build (make by default) on a Debian build root, as a script build.

It records and validates like `ScriptBuild` and lowers to one (`script`), adding the reproducibility
flags (`-ffile-prefix-map`, `SOURCE_DATE_EPOCH=0`) through the environment make passes to the
compiler. `compiler=` is a store path (or derivation) holding a toolchain whose `bin/` goes first on
PATH; `compiler_source=` is a compiler built from source (a `CompilerSource` chain, builders/chain.py)
whose top stage is used the same way. No C compiler chain is defined yet (docs/bootstrap.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tdxstore.builders.chain import CompilerSource, compiler_of
from tdxstore.builders.script import ScriptBuild, script_derivation
from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


@dataclass(frozen=True, slots=True)
class CBuild:
    """`make` (or `build_script`) in `src`; `artifacts` {build path: image path} land in the image."""

    src: str
    build_script: str = "make"
    artifacts: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    build_deps: Sequence[str] = ()
    name: str = ""
    compiler: Derivation | StorePath | None = None
    compiler_source: CompilerSource | None = None
    output: str | None = None
    reproducible: bool = True

    def __post_init__(self) -> None:
        if self.compiler_source is not None:
            if self.compiler is not None:
                raise BuildError("CBuild takes compiler= or compiler_source=, not both",
                                 hint="a built toolchain (compiler=) or one built from source "
                                      "(compiler_source=)", code="invalid-build")
            if not isinstance(self.compiler_source, CompilerSource):
                raise BuildError(f"compiler_source= of CBuild is {type(self.compiler_source).__name__}, not a "
                                 "compiler chain", hint="pass an object with .root and .derivation(root) (see "
                                 "tdxstore/builders/chain.py: CompilerSource)", code="invalid-build")
        if self.compiler is not None and not isinstance(self.compiler, Derivation | StorePath):
            raise BuildError(f"compiler= of CBuild is {type(self.compiler).__name__}, not a store path",
                             hint="pass a Derivation or StorePath holding bin/gcc", code="invalid-build")
        arts = self.artifacts.items() if isinstance(self.artifacts, Mapping) else self.artifacts
        object.__setattr__(self, "src", str(self.src))
        object.__setattr__(self, "artifacts", tuple(sorted(arts)))
        object.__setattr__(self, "build_deps", tuple(self.build_deps))
        object.__setattr__(self, "name", self.name or Path(self.src.rstrip("/")).name or "c-build")
        self.script  # noqa: B018 - validates now, at the user's call

    @property
    def script(self) -> ScriptBuild:
        """The script build it lowers to."""
        arts = self.artifacts if isinstance(self.artifacts, tuple) else tuple(sorted(self.artifacts.items()))
        return ScriptBuild(self.name, self.src, self.build_script, arts, tuple(self.build_deps), self.output,
                           self.reproducible)

    @property
    def root_packages(self) -> tuple[str, ...]:
        return self.script.root_packages

    @property
    def image_paths(self) -> tuple[str, ...]:
        return self.script.image_paths

    def derivation_on(self, store: Store, root: Derivation | StorePath, *, base: Path | None = None) -> Derivation:
        """The derivation on build root `root`."""
        env: dict[str, str] = {}
        inputs: list[Derivation | StorePath] = []
        compiler = compiler_of(self.compiler_source, root) if self.compiler_source is not None else self.compiler
        if compiler is not None:
            out = compiler.out if isinstance(compiler, Derivation) else compiler
            env["PATH"] = f"{out.logical}/bin:/usr/local/bin:/usr/bin:/bin"
            inputs.append(compiler)
        return script_derivation(store, self.script, root, base=base, inputs=inputs, env=env)

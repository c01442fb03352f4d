"""`RustBuild` (spec §4.2): a cargo build, offline, with Debian's rustc/cargo and Debian's crate sources.

It lowers to a script build. The compiler is Debian's `rustc-web`/`cargo-web` (1.96, bookworm-security)
in the build root, or a `compiler=` store path whose `bin/` holds `cargo` and `rustc`. Crates come from
`librust-*-dev` packages (`build_deps`): `/usr/share/cargo/registry` is a cargo `directory` source that
replaces crates.io, with `[net] offline = true` and `--locked`, so `Cargo.lock` is the crate pin. No
official release is pinned here (static.rust-lang.org cannot be reached where this was written).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tdxstore.builders.script import BUILD_DIR, ScriptBuild, add_source, script_derivation
from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: Official toolchains (static.rust-lang.org) by (version, target triple): sha256. None pinned (see above).
OFFICIAL_RELEASES: dict[tuple[str, str], str] = {}
#: Debian's Rust toolchain for bookworm: what the build root gets when no compiler= is given.
DEBIAN_RUST = ("cargo-web", "rustc-web")
DEBIAN_REGISTRY = "/usr/share/cargo/registry"
_FEATURE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_+./-]*$")
_BIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

# cargo's own config: Debian's crate directory replaces crates.io; nothing may reach the network.
_SETUP = r"""mkdir -p /build/cargo-home
if [ -d "$CRATES" ]; then
  printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "%s"\n' "$CRATES" \
    > /build/cargo-home/config.toml
fi
printf '[net]\noffline = true\n' >> /build/cargo-home/config.toml
export CARGO_HOME=/build/cargo-home CARGO_TARGET_DIR=/build/target
"""


@dataclass(frozen=True, slots=True)
class RustBuild:
    """`cargo build --release --bin <bin>` in `src`; the binary lands at the image path `output`."""

    src: str
    output: str
    toolchain: str | None = None  # an official version: needs a pinned hash (none yet); None = Debian's
    compiler: Derivation | StorePath | None = None
    features: Sequence[str] = ()
    bin: str = ""
    build_deps: Sequence[str] = ()
    name: str = ""
    reproducible: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", str(self.src))
        object.__setattr__(self, "features", tuple(sorted(self.features)))
        object.__setattr__(self, "build_deps", tuple(self.build_deps))
        object.__setattr__(self, "bin", self.bin or Path(self.output).name)
        object.__setattr__(self, "name", self.name or self.bin)
        if self.compiler is None and self.toolchain is not None and \
                (self.toolchain, "x86_64-unknown-linux-gnu") not in OFFICIAL_RELEASES:
            raise BuildError(f"Rust {self.toolchain} has no pinned release hash (pinned: none)",
                             hint="omit toolchain= to use Debian's rustc/cargo 1.96 (bookworm-security), or "
                                  "pass compiler= a store path whose bin/ holds cargo and rustc",
                             code="rust-version-unpinned")
        if self.compiler is not None and not isinstance(self.compiler, Derivation | StorePath):
            raise BuildError(f"compiler= of RustBuild is {type(self.compiler).__name__}, not a store path",
                             hint="pass a Derivation or StorePath whose bin/ holds cargo", code="invalid-build")
        if not _BIN.match(self.bin):
            raise BuildError(f"bin {self.bin!r} of Rust build {self.name!r} is not a cargo target name",
                             hint="pass bin= the [[bin]] name of Cargo.toml", code="invalid-build")
        bad = [f for f in self.features if not _FEATURE.match(f)]
        if bad:
            raise BuildError(f"feature {bad[0]!r} of Rust build {self.name!r} is not a cargo feature name",
                             hint="write features=['tdx', 'sgx']", code="invalid-build")
        self.script  # noqa: B018 - validates name and output now, at the user's call

    @property
    def rustflags(self) -> str:
        """Path prefixes remapped (source, crate registry, cargo home) so no sandbox path is in the binary."""
        if not self.reproducible:
            return ""
        return (f"--remap-path-prefix={BUILD_DIR}=. --remap-path-prefix={DEBIAN_REGISTRY}=/crates "
                "--remap-path-prefix=/build/cargo-home=/cargo -C codegen-units=1")

    @property
    def script(self) -> ScriptBuild:
        features = f" --features {','.join(self.features)}" if self.features else ""
        cmd = (_SETUP + f"cargo build --release --offline --locked --bin {self.bin}{features}\n"
               f'mkdir -p "$(dirname "$DESTDIR{self.output}")"\n'
               f'cp /build/target/release/{self.bin} "$DESTDIR{self.output}"\n')
        return ScriptBuild(self.name, self.src, cmd, (), tuple(self.build_deps), self.output, self.reproducible)

    @property
    def root_packages(self) -> tuple[str, ...]:
        extra = DEBIAN_RUST if self.compiler is None else ()
        return tuple(sorted(set(self.script.root_packages) | set(extra)))

    @property
    def image_paths(self) -> tuple[str, ...]:
        return (self.output,)

    def check_lock(self, tree: Path) -> None:
        """A crate with dependencies must carry Cargo.lock: it is the only pin of what cargo uses."""
        manifest = tree / "Cargo.toml"
        if not manifest.is_file():
            raise BuildError(f"src {self.src!r} of Rust build {self.name!r} has no Cargo.toml",
                             hint="point src= at the crate (or workspace) root", code="cargo-toml-missing")
        try:
            data = tomllib.loads(manifest.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise BuildError(f"Cargo.toml of Rust build {self.name!r} is not valid TOML: {e}",
                             hint="fix Cargo.toml", code="cargo-toml-invalid") from e
        deps = any(data.get(k) for k in ("dependencies", "build-dependencies"))
        if deps and not (tree / "Cargo.lock").is_file():
            raise BuildError(f"Rust build {self.name!r} has dependencies but {self.src!r} has no Cargo.lock",
                             hint="run `cargo generate-lockfile` (against the same crates) and commit Cargo.lock",
                             code="cargo-lock-missing")

    def derivation_on(self, store: Store, root: Derivation | StorePath, *, base: Path | None = None) -> Derivation:
        """The build derivation on build root `root` (holding `root_packages` and the librust-*-dev crates)."""
        src = add_source(store, self.src, self.name, base=base)
        self.check_lock(store.real_path(src))
        env = {"CRATES": DEBIAN_REGISTRY, "CARGO_INCREMENTAL": "0", "CARGO_TERM_COLOR": "never"}
        if self.rustflags:
            env["RUSTFLAGS"] = self.rustflags
        inputs: list[Derivation | StorePath] = []
        if self.compiler is not None:
            out = self.compiler.out if isinstance(self.compiler, Derivation) else self.compiler
            env["PATH"] = f"{out.logical}/bin:/usr/local/bin:/usr/bin:/bin"
            inputs.append(self.compiler)
        return script_derivation(store, self.script, root, inputs=inputs, env=env, src=src)

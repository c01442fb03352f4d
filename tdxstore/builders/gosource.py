"""`GoFromSource` (spec §4.1): Go built from source, stage by stage, down to the seed's gccgo (L4).

`GO_STAGES` is the chain's data: one entry per release, its source (a fixed-output fetch pinned by
SHA-256), the minimum bootstrap its tree declares and the files its source lacks, which the stage
writes itself in its (visible) build script. Each stage is a derivation on the seed root, offline;
nothing here downloads or builds: `derivations()` only makes the derivations, and realise runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tdxstore.builders.chain import Stage, resolve_chain
from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation, FixedOutput, derivation
from tdxstore.store.path import StorePath

DEBIAN_POOL = "http://deb.debian.org/debian/pool/main/g"
#: The seed's gccgo (Debian bookworm gccgo-12): its go tool and compiler driver in the seed root.
GCCGO_GO = "/usr/bin/x86_64-linux-gnu-go-12"
GCCGO = "/usr/bin/x86_64-linux-gnu-gccgo-12"


@dataclass(frozen=True, slots=True)
class GoSource:
    """A source archive of one release: `format` "tar.gz" (top directory `go/`) or "deb" (GOROOT at `prefix`).

    `name` is the store name, so the same bytes fetched from Debian or from `upstream_url` give the
    same path (a fixed output's path depends on hash and name only).
    """

    name: str
    url: str
    sha256: str
    format: str = "tar.gz"
    prefix: str = "go"
    upstream_url: str | None = None  # go.dev's URL when its bytes are known to be these (same sha256)

    def __post_init__(self) -> None:
        FixedOutput(self.sha256)  # validates the hash
        if self.format not in ("tar.gz", "deb"):
            raise BuildError(f"Go source {self.name!r} has format {self.format!r}", hint="use tar.gz or deb",
                             code="chain-invalid")

    def fetch(self, *, upstream: bool = False) -> Derivation:
        url = self.upstream_url if upstream and self.upstream_url else self.url
        return derivation(self.name, "builtin:fetchurl", env={"url": url, "kind": "source"},
                          fixed=FixedOutput(self.sha256))


GO_1_19_SRC = GoSource("go1.19.8.src.tar.gz", f"{DEBIAN_POOL}/golang-1.19/golang-1.19_1.19.8.orig.tar.gz",
                       "1d7a67929dccafeaf8a29e55985bc2b789e0499cb1a17100039f084e3238da2f",
                       upstream_url="https://go.dev/dl/go1.19.8.src.tar.gz")


@dataclass(frozen=True, slots=True)
class GoStage:
    """One release of the chain. `source` None: the seed's gccgo, wrapped as a GOROOT (`bin/go`)."""

    chain: Stage
    source: GoSource | None = None
    writes: tuple[str, ...] = ()  # files missing from `source` that the stage writes: VERSION, go.env, zoneinfo

    def __post_init__(self) -> None:
        unknown = set(self.writes) - set(_WRITERS)
        if unknown:
            raise BuildError(f"Go stage {self.chain.key} writes unknown files {sorted(unknown)}",
                             hint=f"known: {', '.join(_WRITERS)}", code="chain-invalid")


# What a stage writes when its source lacks a file (Debian's golang-1.2x-src ship no VERSION and no
# go.env; 1.21's and 1.22's also lack lib/time/zoneinfo.zip, taken from go1.19.8's pinned tarball).
# go.env has upstream's proxy and sumdb defaults, but GOTOOLCHAIN=local: a toolchain built from
# source never downloads another one.
_WRITERS = {
    "VERSION": 'printf "go%s" "$GO_VERSION" > VERSION',
    "go.env": "printf 'GOPROXY=https://proxy.golang.org,direct\\nGOSUMDB=sum.golang.org\\nGOTOOLCHAIN=local\\n'"
              " > go.env",
    "lib/time/zoneinfo.zip": 'mkdir -p lib/time && tar -xzf "$ZONEINFO_SRC" -O go/lib/time/zoneinfo.zip '
                             "> lib/time/zoneinfo.zip",
}
_DEBIAN_MISSING = ("VERSION", "go.env", "lib/time/zoneinfo.zip")

#: The Go chain, bottom first. Minimums are read from each tree (src/cmd/dist's bootstrap check).
GO_STAGES: tuple[GoStage, ...] = (
    GoStage(Stage("gccgo-12", "1.18")),
    GoStage(Stage("1.19.8", "1.19.8", "gccgo-12", "1.4"), GO_1_19_SRC),
    GoStage(Stage("1.21.13", "1.21.13", "gccgo-12", "1.17.13"),
            GoSource("golang-1.21-src_1.21.13-1_bpo12+1_all.deb",
                     f"{DEBIAN_POOL}/golang-1.21/golang-1.21-src_1.21.13-1~bpo12+1_all.deb",
                     "6d24ad6efc90ae4097dd090324709ba7b6b05fa132b00d578818c91572b472a8", "deb", "usr/share/go-1.21"),
            _DEBIAN_MISSING),
    GoStage(Stage("1.22.12", "1.22.12", "1.21.13", "1.20.6"),
            GoSource("golang-1.22-src_1.22.12-3_bpo12+1_all.deb",
                     f"{DEBIAN_POOL}/golang-1.22/golang-1.22-src_1.22.12-3~bpo12+1_all.deb",
                     "99f37c5e8252de17e52360d2d49796f61d545668545708b2cb6a0dc0705e1922", "deb", "usr/share/go-1.22"),
            _DEBIAN_MISSING),
    GoStage(Stage("1.24.4", "1.24.4", "1.22.12", "1.22.6"),
            GoSource("go1.24.4.src.tar.gz", f"{DEBIAN_POOL}/golang-1.24/golang-1.24_1.24.4.orig.tar.gz",
                     "5a86a83a31f9fa81490b8c5420ac384fd3d95a3e71fba665c7b3f95d1dfef2b4",
                     upstream_url="https://go.dev/dl/go1.24.4.src.tar.gz")),
)

_GCCGO_SCRIPT = r"""
set -eu
test -x "$GCCGO_GO" || { echo "tdx: the root has no $GCCGO_GO: use the bootstrap seed (gccgo-12)" >&2; exit 66; }
mkdir -p "$out/bin"
printf '#!/bin/sh\nexec %s "$@"\n' "$GCCGO_GO" > "$out/bin/go"
chmod 0555 "$out/bin/go"
"""

_STAGE_SCRIPT = r"""
set -eu
cd /build
case "$SRC_FORMAT" in
  tar.gz) tar -xzf "$SRC" && test "$SRC_PREFIX" = go ;;
  deb) dpkg-deb -x "$SRC" /build/x && mv "/build/x/$SRC_PREFIX" /build/go ;;
esac
cd /build/go
%(writes)s
test -x "$GOROOT_BOOTSTRAP/bin/go" || { echo "tdx: bootstrap $GOROOT_BOOTSTRAP holds no bin/go" >&2; exit 66; }
cd src
./make.bash
cd ..
rm -rf pkg/obj
cp -a /build/go/. "$out/"
"""


def _stage_script(stage: GoStage) -> str:
    writes = "\n".join(_WRITERS[w] for w in stage.writes) or ":"
    return _STAGE_SCRIPT % {"writes": writes}


@dataclass(frozen=True, slots=True)
class GoFromSource:
    """Go `version` built through the chain; `bootstrap_version` picks the stage that builds it.

    `root` is the seed (a build root holding gcc and gccgo-12, e.g. `bootstrap.seed.realise_seed`);
    None lets `GoBuild` pass its own root. `upstream=True` fetches from go.dev where the chain knows
    its bytes are identical (the paths do not change).
    """

    version: str
    bootstrap_version: str | None = None
    root: Derivation | StorePath | None = None
    upstream: bool = False
    stages: tuple[GoStage, ...] = field(default=GO_STAGES, repr=False)

    def __post_init__(self) -> None:
        self.chain  # noqa: B018 - an unknown version, a too-old bootstrap or a cycle fails at the user's call

    @property
    def chain(self) -> tuple[GoStage, ...]:
        by_key = {s.chain.key: s for s in self.stages}
        keys = resolve_chain([s.chain for s in self.stages], self.version, self.bootstrap_version, family="Go")
        return tuple(by_key[s.key] for s in keys)

    def derivations(self, root: Derivation | StorePath | None = None) -> tuple[Derivation, ...]:
        """One derivation per stage, bottom first, on `root` (default: this object's `root`)."""
        on = root if root is not None else self.root
        if on is None:
            raise BuildError(f"GoFromSource({self.version!r}) has no root to build on",
                             hint="pass root= the bootstrap seed (bootstrap/seed.py: realise_seed)",
                             code="invalid-build")
        built: list[Derivation] = []
        for stage in self.chain:
            if stage.source is None:
                built.append(derivation(f"go-{stage.chain.key}", "/bin/sh", ["-c", _GCCGO_SCRIPT], root=on,
                                        env={"GCCGO_GO": GCCGO_GO}))
                continue
            src = stage.source.fetch(upstream=self.upstream)
            inputs: list[Derivation | StorePath] = [src, built[-1]]
            env = {"SRC": src.out.logical, "SRC_FORMAT": stage.source.format, "SRC_PREFIX": stage.source.prefix,
                   "GO_VERSION": stage.chain.provides, "GOROOT_BOOTSTRAP": built[-1].out.logical,
                   "GCCGO": GCCGO, "GOCACHE": "/build/gocache", "GOTOOLCHAIN": "local", "GOPROXY": "off",
                   "SOURCE_DATE_EPOCH": "0", "LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"}
            if "lib/time/zoneinfo.zip" in stage.writes:
                zoneinfo = GO_1_19_SRC.fetch(upstream=self.upstream)
                inputs.append(zoneinfo)
                env["ZONEINFO_SRC"] = zoneinfo.out.logical
            built.append(derivation(f"go-{stage.chain.key}", "/bin/sh", ["-c", _stage_script(stage)], root=on,
                                    inputs=inputs, env=env, timeout=4 * 3600, max_silent=3600))
        return tuple(built)

    def derivation(self, root: Derivation | StorePath | None = None) -> Derivation:
        """The requested release's derivation (its GOROOT, `bin/go`), with the chain below as inputs."""
        return self.derivations(root)[-1]

"""Bootstrap chains as data (L4): stages, each built by an earlier one, resolved into an ordered list.

A toolchain family (Go today, Rust later) is a table of `Stage`s: what a stage provides (a
language version), the minimum version that may build it (read from its source tree) and the stage
that builds it by default. `resolve_chain` only reads that table: it does no I/O and builds nothing,
so an unknown version, a bootstrap below a stage's minimum or a cycle in the table is one clear
error before any derivation exists. The derivations themselves are the family's builder's job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tdxstore.errors import BuildError
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath

_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")


def version_key(text: str) -> tuple[int, ...]:
    """`"1.22.12"` -> (1, 22, 12); a malformed version is an `invalid-build` error."""
    if not _VERSION.fullmatch(text):
        raise BuildError(f"version {text!r} is not dotted numbers", hint="write versions like 1.22.12",
                         code="invalid-build")
    return tuple(int(p) for p in text.split("."))


@runtime_checkable
class CompilerSource(Protocol):
    """What a builder's `compiler_source=` takes: a compiler built from source as a chain of derivations.

    `root` is the chain's own build root (the bootstrap seed) or None to build on the builder's root;
    `derivation(root)` is the top stage, whose output holds the compiler (`bin/`). `GoFromSource` is
    one; a GCC chain for `CBuild(compiler_source=...)` plugs in the same way.
    """

    @property
    def root(self) -> Derivation | StorePath | None: ...

    def derivation(self, root: Derivation | StorePath | None = None) -> Derivation: ...


def compiler_of(source: CompilerSource, root: Derivation | StorePath) -> Derivation:
    """The top stage of `source`, on its own root when it has one, else on the builder's `root`."""
    return source.derivation(source.root if source.root is not None else root)


@dataclass(frozen=True, slots=True)
class Stage:
    """One entry of a chain table: `key` provides language `provides`, built by `bootstrap` (a key).

    `bootstrap` None marks the bottom of the chain: a compiler that comes with the seed itself.
    `min_bootstrap` is the lowest `provides` of a stage allowed to build this one.
    """

    key: str
    provides: str
    bootstrap: str | None = None
    min_bootstrap: str | None = None

    def __post_init__(self) -> None:
        version_key(self.provides)
        if self.min_bootstrap is not None:
            version_key(self.min_bootstrap)
        if (self.bootstrap is None) != (self.min_bootstrap is None):
            raise BuildError(f"chain stage {self.key!r} names a bootstrap without a minimum (or the reverse)",
                             hint="give both bootstrap= and min_bootstrap=, or neither for the seed's compiler",
                             code="chain-invalid")


def find_stage(stages: Sequence[Stage], wanted: str, family: str) -> Stage:
    """The stage `wanted` names: its key, or a version prefix ("1.22") matching exactly one key."""
    by_key = {s.key: s for s in stages}
    if wanted in by_key:
        return by_key[wanted]
    prefixed = [s for s in stages if s.key.startswith(wanted + ".")]
    if len(prefixed) == 1:
        return prefixed[0]
    known = ", ".join(s.key for s in stages)
    raise BuildError(f"{family} {wanted!r} has no entry in the bootstrap chain",
                     hint=f"versions the chain can build: {known}; adding a release is one entry in its table",
                     code="chain-version-unknown")


def resolve_chain(stages: Sequence[Stage], version: str, bootstrap_version: str | None, *,
                  family: str) -> tuple[Stage, ...]:
    """The stages from the seed's compiler up to `version`, bottom first.

    `bootstrap_version` replaces the default bootstrap of the requested stage only; every stage
    below follows the table. Each step is checked against the minimum its source tree declares.
    """
    top = find_stage(stages, version, family)
    chain = [top]
    seen = {top.key}
    below = find_stage(stages, bootstrap_version, family) if bootstrap_version is not None else None
    current = top
    while current.bootstrap is not None:
        nxt = below if below is not None and current is top else find_stage(stages, current.bootstrap, family)
        assert current.min_bootstrap is not None  # Stage.__post_init__: both or neither
        if version_key(nxt.provides) < version_key(current.min_bootstrap):
            raise BuildError(f"{family} {current.key} needs a bootstrap {family} >= {current.min_bootstrap}, "
                             f"but {nxt.key} provides {nxt.provides}",
                             hint=f"pick a bootstrap_version of at least {current.min_bootstrap} "
                                  f"(or leave it out for the chain's default, {current.bootstrap})",
                             code="bootstrap-too-old")
        if nxt.key in seen:
            cycle = " -> ".join([*(s.key for s in chain), nxt.key])
            raise BuildError(f"the {family} bootstrap chain has a cycle: {cycle}",
                             hint="each stage must be built by an older one; fix the chain table",
                             code="chain-cycle")
        seen.add(nxt.key)
        chain.append(nxt)
        current = nxt
    return tuple(reversed(chain))

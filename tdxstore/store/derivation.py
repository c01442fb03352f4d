"""Derivations: the canonical description of one build, and the paths it produces (L3, pure).

A `Derivation` names a builder (an argv run inside a root file system that is itself a store path,
or a `builtin:` builder for fixed-output fetches), its environment and its inputs (other derivations
or store paths). Its output paths follow Nix: the hash *modulo* fixed-output inputs, so a fetch
whose URL changes but whose content hash does not rebuilds nothing downstream. Values are frozen;
derived hashes are cached on first use. The wire format lives in `drvcodec.py`; `decode` rebuilds one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tdxstore.errors import DerivationError
from tdxstore.store.drvcodec import decode_record, encode, encode_for_modulo
from tdxstore.store.path import (
    StorePath,
    check_name,
    make_fixed_output_path,
    make_output_path,
    make_text_path,
)

#: Fixed-output builtins (network allowed, output checked against the declared hash).
FIXED_BUILTINS = ("builtin:fetchurl", "builtin:fetchgit")
#: Input-addressed builtins that higher layers register (`tdxstore.store.build.register_builtin`).
HOST_BUILTINS = ("builtin:mkosi", "builtin:unpack-deb")
BUILTINS = FIXED_BUILTINS + HOST_BUILTINS
_OUTPUT_RE = re.compile(r"[a-z][a-z0-9_]*")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV = ("out", "HOME", "TMPDIR", "PATH_TO_STORE")


@dataclass(frozen=True, slots=True)
class FixedOutput:
    """A content hash declared in advance: the only kind of build allowed to reach the network."""

    sha256: str  # hex
    recursive: bool = False  # NAR hash of a tree (True) or SHA-256 of a single file (False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise DerivationError(f"fixed output hash {self.sha256!r} is not 64 lowercase hex digits",
                                  code="bad-hash")



@dataclass(frozen=True)
class Derivation:
    """One build. `inputs` are derivations (their outputs) or plain store paths, made visible read-only."""

    name: str
    builder: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    root: Derivation | StorePath | None = None
    inputs: tuple[Derivation | StorePath, ...] = ()
    outputs: tuple[str, ...] = ("out",)
    fixed: FixedOutput | None = None
    timeout: int | None = None
    max_silent: int | None = None
    _meta: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        object.__setattr__(self, "args", tuple(self.args))
        env = self.env.items() if isinstance(self.env, Mapping) else self.env
        object.__setattr__(self, "env", tuple(sorted((str(k), str(v)) for k, v in env)))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        self._validate()
        # Canonical order, so that equal derivations compare equal however their inputs were listed.
        unique = {(i.drv_path if isinstance(i, Derivation) else i).base_name: i for i in self.inputs}
        object.__setattr__(self, "inputs", tuple(unique[k] for k in sorted(unique)))

    def _validate(self) -> None:
        where = f"derivation {self.name!r}"
        if not self.builder:
            raise DerivationError(f"{where} has no builder", code="derivation-invalid")
        builtin = self.builder.startswith("builtin:")
        if builtin and self.builder not in BUILTINS:
            raise DerivationError(f"{where}: unknown builtin builder {self.builder!r}",
                                  hint=f"known builtins: {', '.join(BUILTINS)}", code="derivation-invalid")
        if self.builder in FIXED_BUILTINS and self.fixed is None:
            raise DerivationError(f"{where}: {self.builder} is only allowed for fixed-output derivations",
                                  code="derivation-invalid")
        if not builtin and not self.builder.startswith("/"):
            raise DerivationError(f"{where}: builder {self.builder!r} must be an absolute path in the root",
                                  code="derivation-invalid")
        if not builtin and self.root is None:
            raise DerivationError(f"{where} has no root file system",
                                  hint="pass root= (a store path or derivation of a root file system)",
                                  code="derivation-invalid")
        if self.root is not None and not isinstance(self.root, Derivation | StorePath):
            raise DerivationError(f"{where}: root {self.root!r} is neither a Derivation nor a StorePath",
                                  hint="fetch() returns a file's real path; use a derivation or store.parse(...)",
                                  code="derivation-invalid")
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise DerivationError(f"{where}: outputs must be a non-empty list of distinct names",
                                  code="derivation-invalid")
        for o in self.outputs:
            if not _OUTPUT_RE.fullmatch(o):
                raise DerivationError(f"{where}: invalid output name {o!r}", code="derivation-invalid")
        if self.fixed is not None and self.outputs != ("out",):
            raise DerivationError(f"{where}: a fixed-output derivation has exactly one output, 'out'",
                                  code="derivation-invalid")
        for k, _v in self.env:
            if not _ENV_RE.fullmatch(k) or k in self.outputs:
                raise DerivationError(f"{where}: environment variable name {k!r} is invalid or reserved",
                                      code="derivation-invalid")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        for i in self.inputs:
            if not isinstance(i, Derivation | StorePath):
                raise DerivationError(f"{where}: input {i!r} is neither a Derivation nor a StorePath",
                                      code="derivation-invalid")
        for t in (self.timeout, self.max_silent):
            if t is not None and t <= 0:
                raise DerivationError(f"{where}: timeouts must be positive seconds", code="derivation-invalid")

    # -- graph ----------------------------------------------------------------------------------

    @property
    def input_drvs(self) -> tuple[Derivation, ...]:
        deps = [*self.inputs, self.root] if self.root is not None else list(self.inputs)
        return tuple(d for d in deps if isinstance(d, Derivation))

    @property
    def root_path(self) -> StorePath | None:
        """The store path of the root file system (a derivation root counts by its output)."""
        return self.root.out if isinstance(self.root, Derivation) else self.root

    @property
    def input_srcs(self) -> tuple[StorePath, ...]:
        deps = [*self.inputs, self.root] if self.root is not None else list(self.inputs)
        return tuple(sorted({d for d in deps if isinstance(d, StorePath)}))

    def walk(self) -> Iterator[Derivation]:
        """This derivation and every input derivation, each once, inputs before their users."""
        seen: set[str] = set()
        order: list[Derivation] = []
        stack: list[tuple[Derivation, bool]] = [(self, False)]
        while stack:
            drv, expanded = stack.pop()
            key = drv.drv_path.base_name
            if expanded:
                if key not in seen:
                    seen.add(key)
                    order.append(drv)
                continue
            if key in seen:
                continue
            stack.append((drv, True))
            stack.extend((d, False) for d in reversed(drv.input_drvs))
        return iter(order)

    # -- hashes and paths -------------------------------------------------------------------------

    @cached_property
    def modulo_hash(self) -> str:
        """Nix `hashDerivationModulo`: fixed outputs count only by their declared hash."""
        if self.fixed is not None:
            mode = "r:" if self.fixed.recursive else ""
            out = self.output_paths["out"].logical
            return hashlib.sha256(f"fixed:out:{mode}sha256:{self.fixed.sha256}:{out}".encode()).hexdigest()
        return hashlib.sha256(encode_for_modulo(self)).hexdigest()

    @cached_property
    def output_paths(self) -> dict[str, StorePath]:
        if self.fixed is not None:
            return {"out": make_fixed_output_path(self.fixed.sha256, self.name, recursive=self.fixed.recursive)}
        h = hashlib.sha256(encode_for_modulo(self)).hexdigest()
        return {o: make_output_path(h, self.name, o) for o in self.outputs}

    @property
    def out(self) -> StorePath:
        """The path of output `out` (or the first output)."""
        return self.output_paths.get("out") or self.output_paths[self.outputs[0]]

    @cached_property
    def encoded(self) -> bytes:
        return encode(self)

    @cached_property
    def drv_path(self) -> StorePath:
        refs = [d.drv_path for d in self.input_drvs] + list(self.input_srcs)
        return make_text_path(hashlib.sha256(self.encoded).hexdigest(), f"{self.name}.drv", refs)

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def __str__(self) -> str:
        return self.out.logical


def derivation(name: str, builder: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
               root: Derivation | StorePath | None = None, inputs: Sequence[Derivation | StorePath] = (),
               outputs: Sequence[str] = ("out",), fixed: FixedOutput | None = None,
               timeout: int | None = None, max_silent: int | None = None) -> Derivation:
    """Convenience constructor with keyword arguments and a mapping for `env`."""
    return Derivation(name=name, builder=builder, args=tuple(args), env=tuple((env or {}).items()), root=root,
                      inputs=tuple(inputs), outputs=tuple(outputs), fixed=fixed, timeout=timeout,
                      max_silent=max_silent)


def decode(data: bytes, load_input: Callable[[StorePath], Derivation], where: str = "derivation") -> Derivation:
    """Rebuild a Derivation from its encoding; `load_input` resolves input .drv paths (recursively)."""
    rec = decode_record(data, where)
    inputs: list[Derivation | StorePath] = [load_input(StorePath.parse(p)) for p in sorted(rec["inputDrvs"])]
    srcs = [StorePath.parse(p) for p in rec["inputSrcs"]]
    root: Derivation | StorePath | None = None
    if "root" in rec:
        root_sp = StorePath.parse(rec["root"])
        matches = [d for d in inputs if isinstance(d, Derivation) and root_sp in d.output_paths.values()]
        root = matches[0] if matches else root_sp
    inputs = [i for i in inputs if i is not root] + [s for s in srcs if s != root]
    fixed = None
    out = rec["outputs"].get("out", {})
    if "hash" in out:
        fixed = FixedOutput(out["hash"], out.get("mode") == "recursive")
    drv = Derivation(name=rec["name"], builder=rec["builder"], args=tuple(rec["args"]),
                     env=tuple(rec["env"].items()), root=root, inputs=tuple(inputs),
                     outputs=tuple(sorted(rec["outputs"])), fixed=fixed, timeout=rec.get("timeout"),
                     max_silent=rec.get("maxSilent"))
    if drv.encoded != data:
        raise DerivationError(f"{where}: its recorded output paths or inputs do not match its contents",
                              code="drv-malformed")
    return drv

"""Store paths: the value object and the Nix path computation (L3, pure).

A `StorePath` holds only the 32-character hash part and the name; only the `Store` maps it to a
file-system location. Paths are computed exactly as Nix does: the SHA-256 of the fingerprint
`<type>:sha256:<inner-hex>:<storedir>:<name>`, XOR-folded to 20 bytes, in Nix base-32.
Content-addressed paths (`make_fixed_output_path`) equal Nix's for the same store directory.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tdxstore.errors import StorePathError
from tdxstore.sandbox import STORE_DIR  # defined once, where sandboxes mount it; re-exported here
from tdxstore.store import base32

__all__ = ["HASH_LEN", "MAX_NAME_LEN", "STORE_DIR", "StorePath", "check_name", "make_fixed_output_path",
           "make_output_path", "make_store_path", "make_text_path", "mentioned_paths", "split_logical"]
HASH_LEN = 32  # base-32 characters of a 160-bit hash
MAX_NAME_LEN = 211
_NAME_RE = re.compile(r"[A-Za-z0-9+\-._?=]+")
_HASH_RE = re.compile(rf"[{base32.ALPHABET}]{{{HASH_LEN}}}")


def check_name(name: str) -> None:
    """Raise StorePathError unless `name` is a valid store path name (Nix rules)."""
    if not name:
        raise StorePathError("store path name is empty", hint="give the path a name")
    if len(name) > MAX_NAME_LEN:
        raise StorePathError(f"store path name is longer than {MAX_NAME_LEN} characters: {name[:40]!r}…")
    if name.startswith("."):
        raise StorePathError(f"store path name {name!r} starts with a dot",
                             hint="rename it (for example with --name)")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise StorePathError(
            f"store path name {name!r} contains characters not allowed in store paths: {''.join(bad)!r}",
            hint="use only letters, digits and + - . _ ? = (for example with --name)",
        )


@dataclass(frozen=True, slots=True, order=True)
class StorePath:
    """`<hash>-<name>`: valid once constructed."""

    hash_part: str
    name: str

    def __post_init__(self) -> None:
        if not _HASH_RE.fullmatch(self.hash_part):
            raise StorePathError(f"invalid store path hash part {self.hash_part!r}")
        check_name(self.name)

    @property
    def base_name(self) -> str:
        return f"{self.hash_part}-{self.name}"

    @property
    def logical(self) -> str:
        """The path as builders, references and images see it (`/tdx/store/<h>-<name>`)."""
        return f"{STORE_DIR}/{self.base_name}"

    @property
    def is_derivation(self) -> bool:
        return self.name.endswith(".drv")

    def __str__(self) -> str:
        return self.logical

    @classmethod
    def from_base_name(cls, base: str) -> StorePath:
        if len(base) < HASH_LEN + 2 or base[HASH_LEN] != "-":
            raise StorePathError(f"{base!r} is not a store path base name (<hash>-<name>)")
        return cls(base[:HASH_LEN], base[HASH_LEN + 1:])

    @classmethod
    def parse(cls, text: str, store_dir: str = STORE_DIR) -> StorePath:
        """Parse `/tdx/store/<hash>-<name>` (a trailing sub-path is an error)."""
        prefix = store_dir.rstrip("/") + "/"
        if not text.startswith(prefix):
            raise StorePathError(f"path {text!r} is not in the store {store_dir!r}")
        base = text[len(prefix):]
        if ".." in base.split("/"):
            outside = not posixpath.normpath(text).startswith(prefix)
            raise StorePathError(f"path {text!r} is {'outside the store' if outside else 'not a store path'}: "
                                 f"it contains '..'", hint=f"give a path {prefix}<hash>-<name> without '..'",
                                 code="not-in-store")
        if "/" in base:
            raise StorePathError(f"path {text!r} is inside a store path, not a store path itself")
        return cls.from_base_name(base)


def split_logical(text: str) -> tuple[StorePath, str] | None:
    """(`StorePath`, the sub-path after it or "") for `/tdx/store/<hash>-<name>[/sub]`; None otherwise."""
    if not text.startswith(STORE_DIR + "/"):
        return None
    base, _, rest = text[len(STORE_DIR) + 1:].partition("/")
    return StorePath.from_base_name(base), rest.rstrip("/")


_MENTION_RE = re.compile(rf"{re.escape(STORE_DIR)}/({_HASH_RE.pattern})-({_NAME_RE.pattern})".encode())


def mentioned_paths(data: bytes) -> set[StorePath]:
    """Store paths written out in `data` at their logical location (`/tdx/store/<hash>-<name>…`).

    A name runs to the first character not allowed in names, so `{path}/bin/x` and `"{path}"` are
    found; trailing dots are dropped (`tar -xf {path}.` in a sentence). Invalid names are skipped.
    """
    found = set()
    for m in _MENTION_RE.finditer(data):
        name = m.group(2).decode().rstrip(".")
        if name and not name.startswith("."):
            found.add(StorePath(m.group(1).decode(), name))
    return found


def make_store_path(type_: str, inner_hex: str, name: str, store_dir: str = STORE_DIR) -> StorePath:
    """Nix `makeStorePath`: hash the fingerprint and fold it to 160 bits."""
    check_name(name)
    fingerprint = f"{type_}:sha256:{inner_hex}:{store_dir}:{name}"
    digest = hashlib.sha256(fingerprint.encode()).digest()
    return StorePath(base32.encode(base32.compress_hash(digest, 20)), name)


def _type_with_refs(kind: str, references: Iterable[StorePath], self_ref: bool) -> str:
    parts = [kind, *sorted(r.logical for r in references)]
    if self_ref:
        parts.append("self")
    return ":".join(parts)


def make_fixed_output_path(sha256_hex: str, name: str, *, recursive: bool,
                           references: Iterable[StorePath] = (), self_ref: bool = False,
                           store_dir: str = STORE_DIR) -> StorePath:
    """Nix `makeFixedOutputPath` for SHA-256: `recursive` hashes the NAR, otherwise the flat file."""
    if recursive:
        return make_store_path(_type_with_refs("source", references, self_ref), sha256_hex, name, store_dir)
    refs = list(references)
    if refs or self_ref:
        raise StorePathError("a flat (non-recursive) content-addressed path cannot have references")
    inner = hashlib.sha256(f"fixed:out:sha256:{sha256_hex}:".encode()).hexdigest()
    return make_store_path("output:out", inner, name, store_dir)


def make_text_path(sha256_hex: str, name: str, references: Iterable[StorePath] = (),
                   store_dir: str = STORE_DIR) -> StorePath:
    """Nix text paths (used for .drv files): the SHA-256 of the contents, with references."""
    return make_store_path(_type_with_refs("text", references, False), sha256_hex, name, store_dir)


def make_output_path(drv_modulo_hex: str, drv_name: str, output: str,
                     store_dir: str = STORE_DIR) -> StorePath:
    """Nix `makeOutputPath`: `output:<id>` over the derivation's hash modulo fixed outputs."""
    name = drv_name if output == "out" else f"{drv_name}-{output}"
    return make_store_path(f"output:{output}", drv_modulo_hex, name, store_dir)

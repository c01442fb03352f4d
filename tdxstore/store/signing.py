"""Ed25519 signatures of store paths, in Nix's formats (L3).

Keys and signatures are `<name>:<base64>` (a secret key holds the 32-byte seed and the 32-byte public
key, as `nix-store --generate-binary-cache-key` writes them). A signature covers the fingerprint
`1;<store path>;sha256:<nix base-32 NAR hash>;<NAR size>;<comma-separated references>`, so it vouches
for content and references together. Nothing here reads configuration or writes files.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tdxstore.errors import TransferError
from tdxstore.store import base32
from tdxstore.store.transfer import PathRecord

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,127}")


def _key_error(what: str, where: str) -> TransferError:
    return TransferError(f"{where} is not a key: {what}",
                         hint="a key is `<name>:<base64>` as `tdx key generate` writes it",
                         code="key-invalid")


def _split(text: str, size: int, where: str) -> tuple[str, bytes]:
    name, sep, b64 = text.strip().partition(":")
    if not sep or not _NAME.fullmatch(name):
        raise _key_error("expected <name>:<base64>", where)
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _key_error("the part after ':' is not base64", where) from e
    if len(raw) != size:
        raise _key_error(f"{len(raw)} bytes of key material, expected {size}", where)
    return name, raw


@dataclass(frozen=True, slots=True)
class PublicKey:
    name: str
    raw: bytes

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.raw) != 32:
            raise _key_error("bad name or length", repr(self.name))

    @classmethod
    def parse(cls, text: str, where: str = "the public key") -> PublicKey:
        return cls(*_split(text, 32, where))

    def __str__(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"

    def verifies(self, record: PathRecord, signature: str) -> bool:
        name, _, b64 = signature.partition(":")
        if name != self.name:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(base64.b64decode(b64, validate=True),
                                                                fingerprint(record))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class SecretKey:
    name: str
    seed: bytes

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.seed) != 32:
            raise _key_error("bad name or length", repr(self.name))

    @classmethod
    def generate(cls, name: str) -> SecretKey:
        if not _NAME.fullmatch(name):
            raise TransferError(f"key name {name!r} is not allowed", code="key-invalid",
                                hint="use letters, digits, '.', '-' and '_' (for example cache.example.org-1)")
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed)

    @classmethod
    def parse(cls, text: str, where: str = "the secret key") -> SecretKey:
        name, raw = _split(text, 64, where)
        key = cls(name, raw[:32])
        if key.public.raw != raw[32:]:
            raise _key_error("its public half does not belong to its seed", where)
        return key

    @property
    def public(self) -> PublicKey:
        pub = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return PublicKey(self.name, pub.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def __str__(self) -> str:
        return f"{self.name}:{base64.b64encode(self.seed + self.public.raw).decode()}"

    def sign(self, record: PathRecord) -> str:
        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(fingerprint(record))
        return f"{self.name}:{base64.b64encode(sig).decode()}"


def fingerprint(record: PathRecord) -> bytes:
    nar = base32.encode(bytes.fromhex(record.nar_hash.removeprefix("sha256:")))
    refs = ",".join(r.logical for r in record.references)
    return f"1;{record.path.logical};sha256:{nar};{record.nar_size};{refs}".encode()


def trusted_by(record: PathRecord, keys: Iterable[PublicKey]) -> bool:
    """Whether one of the record's signatures verifies with one of `keys`."""
    return any(k.verifies(record, s) for k in keys for s in record.signatures)


def require_signatures(records: Sequence[PathRecord], keys: Sequence[PublicKey], what: str) -> None:
    """One error naming every record no trusted key has signed (before anything is written)."""
    bad = [r for r in records if not trusted_by(r, keys)]
    if not bad:
        return
    names = ", ".join(k.name for k in keys) or "none"
    unsigned = sum(1 for r in bad if not r.signatures)
    raise TransferError(f"{len(bad)} path(s) of {what} carry no signature by a trusted key ({names}): "
                        f"{unsigned} unsigned, {len(bad) - unsigned} signed by other keys or not verifying",
                        detail="\n".join(str(r.path) for r in bad[:20]) + ("\n…" if len(bad) > 20 else ""),
                        hint="sign them at the source (tdx store sign --key KEY PATHS) and export again, or "
                             "trust the key that signed them", code="signature-untrusted")

"""Nix's base-32 encoding and hash compression (L3, pure functions).

Nix base-32 uses the alphabet `0123456789abcdfghijklmnpqrsvwxyz` (no e, o, u, t) and emits the
*last* 5-bit group first, so it is not RFC 4648. `compress_hash` XOR-folds a digest to n bytes,
as Nix does to shorten a SHA-256 to the 160 bits of a store path hash.
"""

from __future__ import annotations

from tdxstore.errors import UsageError

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def encoded_length(nbytes: int) -> int:
    return (nbytes * 8 - 1) // 5 + 1


def encode(data: bytes) -> str:
    """Nix base-32 of `data`."""
    out = []
    for n in range(encoded_length(len(data)) - 1, -1, -1):
        b = n * 5
        i, j = divmod(b, 8)
        c = data[i] >> j
        if i + 1 < len(data):
            c |= data[i + 1] << (8 - j)
        out.append(ALPHABET[c & 0x1F])
    return "".join(out)


def decode(text: str) -> bytes:
    """Inverse of `encode`; raises UsageError on a bad character or non-canonical padding."""
    nbytes = len(text) * 5 // 8
    if encoded_length(nbytes) != len(text):
        raise UsageError(f"invalid Nix base-32 length {len(text)}: {text!r}")
    out = bytearray(nbytes)
    for n, ch in enumerate(reversed(text)):
        digit = _INDEX.get(ch)
        if digit is None:
            raise UsageError(f"invalid character {ch!r} in Nix base-32 string {text!r}")
        b = n * 5
        i, j = divmod(b, 8)
        out[i] |= (digit << j) & 0xFF
        carry = digit >> (8 - j)
        if i + 1 < nbytes:
            out[i + 1] |= carry
        elif carry:
            raise UsageError(f"invalid Nix base-32 string {text!r}: excess bits")
    return bytes(out)


def compress_hash(digest: bytes, size: int) -> bytes:
    """XOR-fold `digest` into `size` bytes (Nix `compressHash`)."""
    out = bytearray(size)
    for i, byte in enumerate(digest):
        out[i % size] ^= byte
    return bytes(out)

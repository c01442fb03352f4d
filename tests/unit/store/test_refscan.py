"""The sampled reference scanner finds exactly what a naive sliding window finds.

A run of 32 base-32 bytes always holds 4 samples taken 8 bytes apart; these tests put hash parts
at every offset modulo 8, next to near-misses (31-byte runs, runs cut by a non-base-32 byte), in
noise dense with base-32 bytes, and split the stream at arbitrary places.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tdxstore.store._refscan import RefScanner
from tdxstore.store.base32 import ALPHABET

ALPHA = ALPHABET.encode()
OTHER = bytes(b for b in range(256) if b not in ALPHA)


def _hash_part(rnd: random.Random) -> bytes:
    return bytes(rnd.choice(ALPHA) for _ in range(32))


def _naive(data: bytes, candidates: set[bytes]) -> set[str]:
    return {data[i:i + 32].decode() for i in range(len(data) - 31) if data[i:i + 32] in candidates}


def _noise(rnd: random.Random, n: int, density: float) -> bytearray:
    return bytearray(rnd.choice(ALPHA) if rnd.random() < density else rnd.choice(OTHER) for _ in range(n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), density=st.sampled_from([0.0, 0.3, 0.8, 0.97]),
       cuts=st.lists(st.integers(0, 40_000), max_size=4))
def test_sampled_scan_equals_naive_scan(seed: int, density: float, cuts: list[int]) -> None:
    rnd = random.Random(seed)
    data = _noise(rnd, 40_000, density)
    candidates = {_hash_part(rnd) for _ in range(6)}
    planted = rnd.sample(sorted(candidates), 4)
    for k, h in enumerate(planted):
        at = rnd.randrange(0, len(data) - 32) // 8 * 8 + k * 3 % 8  # several offsets modulo 8
        data[at:at + 32] = h
    near = _hash_part(rnd)
    candidates.add(near)
    at = rnd.randrange(0, len(data) - 40)
    data[at:at + 33] = near[:31] + b"-" + near[31:]  # split by a non-base-32 byte: not a reference
    blob = bytes(data)
    scanner = RefScanner(c.decode() for c in candidates)
    start = 0
    for cut in [*sorted(cuts), len(blob)]:
        scanner.feed(memoryview(blob)[start:max(start, cut)])
        start = max(start, cut)
    assert scanner.found == _naive(blob, candidates)


def test_every_offset_in_a_large_chunk() -> None:
    rnd = random.Random(5)
    base = bytes(_noise(rnd, 1 << 20, 0.6))
    h = _hash_part(rnd)
    for at in [0, 1, 7, 8, 9, 4095, 4096, (1 << 16) - 5, (1 << 20) - 32]:
        data = bytearray(base)
        data[at:at + 32] = h
        data[at - 1:at] = b"-" if at else b""
        scanner = RefScanner([h.decode()])
        scanner.feed(data)
        assert scanner.found == {h.decode()}, at


def test_a_run_ending_exactly_at_a_sample_is_found() -> None:
    # bytes 8..39 are the hash; the samples at 8, 16, 24, 32 are its only marked ones
    h = b"0123456789abcdfghijklmnpqrsvwxyz"
    data = b"\xff" * 8 + h + b"\xff" * 8000
    scanner = RefScanner([h.decode()])
    scanner.feed(data)
    assert scanner.found == {h.decode()}

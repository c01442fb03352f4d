"""`why-depends`: the shortest reference chain between two paths, with where each reference sits (L3)."""

from __future__ import annotations

import itertools
import os
from collections import deque
from pathlib import Path

from tdxstore.errors import StoreError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


def reference_chain(store: Store, start: StorePath, goal: StorePath) -> list[StorePath]:
    store.query(start)
    store.query(goal)
    prev: dict[StorePath, StorePath | None] = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        if cur == goal:
            chain = [cur]
            while (p := prev[chain[-1]]) is not None:
                chain.append(p)
            return chain[::-1]
        for r in store.references(cur):
            if r not in prev:
                prev[r] = cur
                queue.append(r)
    raise StoreError(f"{start} does not depend on {goal}", code="no-dependency")


def occurrences(root: Path, needle: bytes, limit: int = 5) -> list[str]:
    """Files (or symlinks) below `root` that contain `needle`, with a little context."""
    found: list[str] = []
    entries = [root] if not root.is_dir() or root.is_symlink() else [
        Path(d) / n for d, _ds, fs in os.walk(root) for n in sorted(fs)]
    for p in entries:
        data = os.fsencode(os.readlink(p)) if p.is_symlink() else p.read_bytes()
        i = data.find(needle)
        if i >= 0:
            ctx = data[max(0, i - 20): i + len(needle) + 20].decode("utf-8", "replace")
            rel = p.relative_to(root) if p != root else Path(".")
            found.append(f"{rel}: …{ctx.replace(chr(10), ' ')}…")
        if len(found) >= limit:
            break
    return found


def why_depends(store: Store, package: StorePath, dependency: StorePath) -> list[str]:
    chain = reference_chain(store, package, dependency)
    lines = [str(chain[0])]
    for a, b in itertools.pairwise(chain):
        lines.append(f"└── {b}")
        for occ in occurrences(store.real_path(a), b.hash_part.encode()):
            lines.append(f"      in {occ}")
    return lines

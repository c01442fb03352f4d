"""The difference report: findings (where, what changed, a readable detail), as text or JSON.

Pure values and formatting; nothing here reads files or decides which artifacts to compare. A finding's
`where` is the path into the artifact (file, PE section or partition, member), so a reader goes from
"image.efi" to ".initrd" to "etc/built". Text contents get a unified diff; binary ones size and SHA-256.
Output is deterministic: findings sorted by where, no timestamps, no absolute paths of temporary stores.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import StrEnum

from tdxstore.diff.archive import Entry, packages, services
from tdxstore.errors import DiffError

DIFF_LINES = 60  # at most this many lines of unified diff per file
RENDER_FINDINGS = 200  # the text report shows this many findings, then a count


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference: the path into the artifacts, its kind, a one-line summary, detail lines (a diff)."""

    where: tuple[str, ...]
    change: Change
    summary: str
    detail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.where or any(not part for part in self.where):
            raise DiffError(f"a finding needs a non-empty location, got {self.where!r}", code="internal-error")

    @property
    def location(self) -> str:
        return " › ".join(self.where)

    def to_json(self) -> dict[str, object]:
        return {"where": list(self.where), "change": self.change.value, "summary": self.summary,
                "detail": list(self.detail)}


@dataclass(frozen=True, slots=True)
class Report:
    """The differences between two artifacts `a` and `b` (labels, as the user named them)."""

    a: str
    b: str
    findings: tuple[Finding, ...]
    deep: str | None = field(default=None, compare=False)  # diffoscope's report, when it ran

    @property
    def identical(self) -> bool:
        return not self.findings

    def artifacts(self) -> list[str]:
        """The top-level artifacts (files of an image) that differ, in order."""
        return list(dict.fromkeys(f.where[0] for f in self.findings))

    def render(self, limit: int = RENDER_FINDINGS) -> str:
        """The short summary first (one line per differing artifact), then each finding with its detail."""
        if self.identical:
            return f"identical: {self.a} and {self.b}\n"
        lines = [f"--- {self.a}", f"+++ {self.b}"]
        for art in self.artifacts():
            n = sum(1 for f in self.findings if f.where[0] == art)
            lines.append(f"differs: {art} ({n} difference{'s' if n != 1 else ''})")
        for f in self.findings[:limit]:
            lines.append(f"{f.change.value:<8} {f.location}: {f.summary}")
            lines += [f"    {d}" for d in f.detail]
        if len(self.findings) > limit:
            lines.append(f"... {len(self.findings) - limit} more differences (--json lists them all)")
        if self.deep:
            lines += ["", "diffoscope:", self.deep.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"a": self.a, "b": self.b, "identical": self.identical,
                                  "artifacts": self.artifacts(), "findings": [f.to_json() for f in self.findings]}
        if self.deep is not None:
            out["diffoscope"] = self.deep
        return out


def as_text(data: bytes | None) -> list[str] | None:
    """The lines of `data` when it is UTF-8 text without NUL bytes, else None."""
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def text_diff(name: str, a: list[str], b: list[str]) -> tuple[str, ...]:
    """A unified diff of two texts, cut at DIFF_LINES lines."""
    lines = list(difflib.unified_diff(a, b, f"a/{name}", f"b/{name}", lineterm="", n=2))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... {len(lines) - DIFF_LINES} more diff lines"]
    return tuple(lines)


def content_finding(where: tuple[str, ...], a: bytes | None, b: bytes | None, size: tuple[int, int],
                    sha: tuple[str, str]) -> Finding:
    """How two contents differ: a unified diff for text, size and SHA-256 for anything else."""
    ta, tb = as_text(a), as_text(b)
    if ta is not None and tb is not None:
        return Finding(where, Change.CHANGED, "text differs", text_diff(where[-1], ta, tb))
    return Finding(where, Change.CHANGED,
                   f"binary differs: size {size[0]} -> {size[1]}, sha256 {sha[0][:16]}… -> {sha[1][:16]}…")


def compare_entries(where: tuple[str, ...], a: dict[str, Entry], b: dict[str, Entry]) -> list[Finding]:
    """Members only in one archive, then members whose kind, mode, owner, time, link or content differ."""
    out = [Finding((*where, n), Change.REMOVED, a[n].kind) for n in sorted(a.keys() - b.keys())]
    out += [Finding((*where, n), Change.ADDED, b[n].kind) for n in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        if x == y:
            continue
        fx, fy = x.fields(), y.fields()
        meta = [f"{k} {fx[k]} -> {fy[k]}" for k in fx if k not in ("sha256", "size") and fx[k] != fy[k]]
        if x.sha256 != y.sha256 and x.kind == y.kind == "file":
            found = content_finding((*where, name), x.data, y.data, (x.size, y.size), (x.sha256, y.sha256))
            summary = "; ".join([found.summary, *meta])
            out.append(Finding(found.where, Change.CHANGED, summary, found.detail))
        else:
            out.append(Finding((*where, name), Change.CHANGED, "; ".join(meta) or "metadata differs"))
    return out + _inventory(where, a, b)


def _inventory(where: tuple[str, ...], a: dict[str, Entry], b: dict[str, Entry]) -> list[Finding]:
    """Packages and systemd units added, removed or changed: the reviewer's view of a file-system change."""
    out: list[Finding] = []
    for label, pa, pb in (("package", packages(a), packages(b)), ("unit", services(a), services(b))):
        for name in sorted(pa.keys() | pb.keys()):
            if pa.get(name) == pb.get(name):
                continue
            at = (*where, f"{label} {name}")
            if name not in pb:
                out.append(Finding(at, Change.REMOVED, f"{label} {name} {pa[name][:16]}"))
            elif name not in pa:
                out.append(Finding(at, Change.ADDED, f"{label} {name} {pb[name][:16]}"))
            else:
                out.append(Finding(at, Change.CHANGED, f"{label} {name} {pa[name][:16]} -> {pb[name][:16]}"))
    return out

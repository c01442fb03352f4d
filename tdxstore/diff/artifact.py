"""Comparing two artifacts, recursively: directories of files, UKIs (PE sections, the initrd inside), GPT disks
(partitions, the UKI on the ESP), tars, cpio initrds, JSON and text.

Reads both sides fully and never writes. Equal bytes are never opened further; a structured comparison
that finds nothing while the bytes differ says so (headers, padding, order), so a difference is never
silent. The kind of a file is sniffed from its bytes, not its name (an image's files have fixed names).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tdxstore.diff.archive import initrd_entries, is_cpio, tar_entries
from tdxstore.diff.report import Change, Finding, Report, as_text, compare_entries, content_finding, text_diff
from tdxstore.errors import DiffError, MeasureError
from tdxstore.measure.authenticode import PeLayout, parse_pe
from tdxstore.measure.fat import read_file
from tdxstore.measure.gpt import ESP_TYPE, Gpt, is_gpt, parse_gpt, partition_bytes

BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
TEXT_SECTIONS = (".cmdline", ".osrel", ".uname", ".sbat", ".sdmagic")


def sniff(data: bytes) -> str:
    """pe, gpt, tar, cpio, json, text or binary."""
    if data[:2] == b"MZ":
        return "pe"
    if is_gpt(data):
        return "gpt"
    if data[257:262] == b"ustar":
        return "tar"
    if is_cpio(data):
        return "cpio"
    lines = as_text(data[:1 << 20])
    if lines is not None:
        try:
            json.loads(data)
            return "json"
        except ValueError:
            return "text"
    return "binary"


def _sha(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob(where: tuple[str, ...], a: bytes, b: bytes) -> Finding:
    return content_finding(where, a, b, (len(a), len(b)), (_sha(a), _sha(b)))


def compare_bytes(where: tuple[str, ...], a: bytes, b: bytes,
                  seen: dict[tuple[str, str], str] | None = None) -> list[Finding]:
    """The findings between two contents of the same artifact (empty when the bytes are equal).

    `seen` maps a pair of contents already compared to where: the same pair again (the UKI on the disk's
    ESP, beside image.efi) is one finding pointing there, not the whole comparison twice.
    """
    if a == b:
        return []
    if seen is not None:
        key = (_sha(a), _sha(b))
        if key in seen:
            return [Finding(where, Change.CHANGED, f"the same difference as {seen[key]}")]
        seen[key] = " › ".join(where)
    ka, kb = sniff(a), sniff(b)
    if ka != kb:
        return [Finding(where, Change.CHANGED, f"kind {ka} -> {kb}; size {len(a)} -> {len(b)}")]
    if ka == "pe":
        found = _compare_pe(where, a, b)
    elif ka == "gpt":
        found = _compare_disk(where, a, b, seen)
    elif ka == "tar":
        found = compare_entries(where, tar_entries(a), tar_entries(b))
    elif ka == "cpio":
        found = compare_entries(where, initrd_entries(a), initrd_entries(b))
    elif ka == "json":
        pretty = [json.dumps(json.loads(x), indent=2, sort_keys=True).splitlines() for x in (a, b)]
        found = [Finding(where, Change.CHANGED, "JSON differs", text_diff(where[-1], *pretty))]
        if pretty[0] == pretty[1]:
            found = []
    else:
        found = [_blob(where, a, b)]
    if not found:
        found = [Finding(where, Change.CHANGED, f"bytes differ outside the compared structure ({ka} headers, "
                                                f"padding or order); size {len(a)} -> {len(b)}")]
    return found


def _pe(data: bytes) -> tuple[PeLayout, dict[str, bytes]]:
    try:
        layout = parse_pe(data)
    except MeasureError as e:
        raise DiffError(f"cannot read a PE image: {e.message}", code="diff-bad-pe") from e
    sections: dict[str, bytes] = {}
    for s in layout.sections:  # the bytes a section holds: VirtualSize long, at most its raw data
        sections.setdefault(s.name, data[s.raw_offset:s.raw_offset + min(s.virtual_size or s.raw_size, s.raw_size)])
    return layout, sections


def _compare_pe(where: tuple[str, ...], a: bytes, b: bytes) -> list[Finding]:
    """PE sections only in one image, then differing sections: the initrd's files, text, or size/hash."""
    (la, sa), (lb, sb) = _pe(a), _pe(b)
    out = [Finding((*where, n), Change.REMOVED, f"PE section ({len(sa[n])} bytes)") for n in sa if n not in sb]
    out += [Finding((*where, n), Change.ADDED, f"PE section ({len(sb[n])} bytes)") for n in sb if n not in sa]
    for name in (n for n in sa if n in sb and sa[n] != sb[n]):
        at = (*where, name)
        if name == ".initrd" and is_cpio(sa[name]) and is_cpio(sb[name]):
            inner = compare_entries(at, initrd_entries(sa[name]), initrd_entries(sb[name]))
            out.append(Finding(at, Change.CHANGED, f"initrd differs: size {len(sa[name])} -> {len(sb[name])}, "
                                                   f"{len(inner)} member difference(s)"))
            out += inner
        elif name in TEXT_SECTIONS:
            ta, tb = (as_text(x.rstrip(b"\0")) for x in (sa[name], sb[name]))
            out.append(Finding(at, Change.CHANGED, "text differs", text_diff(name, ta or [], tb or []))
                       if ta is not None and tb is not None else _blob(at, sa[name], sb[name]))
        else:
            out.append(_blob(at, sa[name], sb[name]))
    order = ([s.name for s in la.sections], [s.name for s in lb.sections])
    if not out and order[0] != order[1]:
        out.append(Finding(where, Change.CHANGED, f"PE section order {' '.join(order[0])} -> {' '.join(order[1])}"))
    return out


def _gpt(data: bytes) -> Gpt:
    try:
        return parse_gpt(data)
    except MeasureError as e:
        raise DiffError(f"cannot read a GPT disk image: {e.message}", code="diff-bad-disk") from e


def _compare_disk(where: tuple[str, ...], a: bytes, b: bytes,
                  seen: dict[tuple[str, str], str] | None) -> list[Finding]:
    """Disk GUID and partition entries (measured into RTMR1), then each partition; the ESP's UKI as a UKI."""
    ga, gb = _gpt(a), _gpt(b)
    out = []
    if ga.disk_guid != gb.disk_guid:
        out.append(Finding((*where, "GPT"), Change.CHANGED, f"disk GUID {ga.disk_guid} -> {gb.disk_guid}"))
    for i in range(max(len(ga.partitions), len(gb.partitions))):
        pa = ga.partitions[i] if i < len(ga.partitions) else None
        pb = gb.partitions[i] if i < len(gb.partitions) else None
        label = f"partition {i + 1} ({(pa or pb).name or 'unnamed'})"  # type: ignore[union-attr]
        at = (*where, label)
        if pa is None or pb is None:
            out.append(Finding(at, Change.ADDED if pa is None else Change.REMOVED, "GPT partition entry"))
            continue
        if pa.raw != pb.raw:
            fields = [(k, getattr(pa, k), getattr(pb, k)) for k in ("first_lba", "last_lba", "unique_guid",
                                                                    "type_guid", "name")]
            changed = [f"{k} {x} -> {y}" for k, x, y in fields if x != y] or ["attributes differ"]
            out.append(Finding(at, Change.CHANGED, "GPT entry: " + ", ".join(changed)))
        da, db = partition_bytes(a, pa), partition_bytes(b, pb)
        if da == db:
            continue
        if pa.type_guid == pb.type_guid == ESP_TYPE:
            try:
                ua, ub = read_file(da, BOOT_FILE), read_file(db, BOOT_FILE)
            except MeasureError as e:
                out.append(Finding(at, Change.CHANGED, f"ESP differs; cannot read {BOOT_FILE}: {e.message}"))
                continue
            inner = compare_bytes((*at, BOOT_FILE), ua, ub, seen)
            out += inner or [Finding(at, Change.CHANGED, "FAT file system differs; its boot file is identical")]
        else:
            out.append(_blob(at, bytes(da), bytes(db)))
    return out


def _files(root: Path) -> dict[str, Path]:
    """Every file and symlink below `root` by relative path (directories are walked, links not followed)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            p = Path(dirpath, name)
            found[p.relative_to(root).as_posix()] = p
    return found


def _read(path: Path) -> bytes:
    try:
        if path.is_symlink():
            return b"symlink -> " + os.fsencode(os.readlink(path))
        return path.read_bytes()
    except OSError as e:
        raise DiffError(f"cannot read {str(path)!r}: {e.strerror}", code="diff-unreadable") from e


def compare_paths(a: Path, b: Path, label_a: str | None = None, label_b: str | None = None) -> Report:
    """The report between two files or two directories (each file compared by its relative path)."""
    for p in (a, b):
        if not p.exists() and not p.is_symlink():
            raise DiffError(f"{str(p)!r} does not exist", code="diff-unreadable")
    la, lb = label_a or str(a), label_b or str(b)
    if a.is_dir() != b.is_dir():
        raise DiffError(f"cannot compare {la!r} with {lb!r}: one is a directory, the other a file",
                        hint="compare two images, or two files of the same kind", code="diff-kind-mismatch")
    if not a.is_dir():
        return Report(la, lb, tuple(compare_bytes((a.name,), _read(a), _read(b))))
    fa, fb = _files(a), _files(b)
    found = [Finding((n,), Change.REMOVED, "file") for n in sorted(fa.keys() - fb.keys())]
    found += [Finding((n,), Change.ADDED, "file") for n in sorted(fb.keys() - fa.keys())]
    seen: dict[tuple[str, str], str] = {}
    # the UKI first: the disk's ESP holds the same file, and its difference then points back to image.efi
    for name in sorted(fa.keys() & fb.keys(), key=lambda n: (not n.endswith(".efi"), n)):
        found += compare_bytes((name,), _read(fa[name]), _read(fb[name]), seen)
    return Report(la, lb, tuple(found))

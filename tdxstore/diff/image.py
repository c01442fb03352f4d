"""Two built images compared: which artifacts differ and where inside, and which measurements that moves.

An image is a built store directory holding `image.efi` (with `image.disk`, `measurements.json`) or
`image.tar`; anything else is one error. Reads only. Measurements come from the images' manifests, the
"because" (the initrd's files, the command line) from the artifacts, and the deep report from Debian's
diffoscope where installed, after our own summary (its status 1 means "differences", never a failure).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tdxstore.diff.artifact import compare_paths
from tdxstore.diff.measurement import MeasurementChange, compare_manifests
from tdxstore.diff.report import Report
from tdxstore.errors import CommandError, DiffError
from tdxstore.measure import Profile, predict_image
from tdxstore.sandbox import process

IMAGE_FILES = ("image.efi", "image.tar")
MANIFEST = "measurements.json"
BECAUSE_LINES = 20


def check_image(path: Path, label: str) -> None:
    """DiffError(diff-not-image) unless `path` is a directory holding a built image."""
    if not path.is_dir() or not any((path / f).is_file() for f in IMAGE_FILES):
        raise DiffError(f"{label!r} is not a built image (a directory with {' or '.join(IMAGE_FILES)})",
                        hint="pass two store paths or result links of `tdx build`, or two TDXfiles",
                        code="diff-not-image")


def _manifest(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DiffError(f"cannot read {str(path / MANIFEST)!r}: {e}", code="diff-not-manifest") from e
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class ImageDiff:
    """The artifact report and, for bootable images, the measurement change (None without manifests)."""

    report: Report
    measurements: MeasurementChange | None
    notes: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return self.report.identical

    def because(self) -> list[str]:
        """The files inside the UKI's initrd and its text sections that changed: the cause of the moves."""
        lines = []
        for f in self.report.findings:
            inside = f.where[1:] if f.where[0] in ("image.efi",) else ()
            if len(inside) >= 2 and inside[0] == ".initrd":
                lines.append(f"initrd content: {' '.join(inside[1:])} {f.change.value}")
            elif len(inside) == 1 and inside[0] in (".cmdline", ".osrel", ".uname", ".linux"):
                lines.append(f"UKI section {inside[0]} {f.change.value}")
        # changed files first: an added directory explains less than a file whose content moved
        return sorted(lines, key=lambda line: not line.endswith(" changed"))

    def render(self) -> str:
        lines = []
        if self.measurements is not None:
            lines += self.measurements.describe()
            because = self.because()
            lines += [f"because: {b}" for b in because[:BECAUSE_LINES]]
            if len(because) > BECAUSE_LINES:
                lines.append(f"because: ... {len(because) - BECAUSE_LINES} more (the report below lists them)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + ("\n" if lines else "") + self.report.render()

    def to_json(self) -> dict[str, object]:
        return {"identical": self.identical,
                "measurements": self.measurements.to_json() if self.measurements else None,
                "because": self.because(), "notes": list(self.notes), "report": self.report.to_json()}


def predicted_manifest(image: Path, firmware: bytes, profile: Profile) -> dict[str, object]:
    """The manifest of a built UKI image predicted again with `profile` (its platform blobs: RTMR0 too)."""
    uki, disk = image / "image.efi", image / "image.disk"
    if not uki.is_file() or not disk.is_file():
        raise DiffError(f"{str(image)!r} is not a bootable image (no image.efi and image.disk)",
                        hint="--blobs compares the measurements of UKI images", code="diff-not-image")
    data = predict_image(uki.read_bytes(), disk.read_bytes(), firmware, profile).to_json()
    old = _manifest(image) or {}
    data["firmware_store_path"] = old.get("firmware_store_path")
    return data


def diff_images(a: Path, b: Path, label_a: str, label_b: str, *, deep: bool = False,
                manifests: tuple[dict[str, object], dict[str, object]] | None = None) -> ImageDiff:
    """Compare two built image directories; with `deep`, add diffoscope's report when they differ.

    `manifests` replace the images' own measurements.json (a prediction with the target's blobs).
    """
    check_image(a, label_a)
    check_image(b, label_b)
    report = compare_paths(a, b, label_a, label_b)
    if deep and not report.identical:
        report = Report(report.a, report.b, report.findings, diffoscope(a, b) or
                        "diffoscope is not installed (apt-get install diffoscope-minimal) for the deep report")
    ma, mb = manifests if manifests is not None else (_manifest(a), _manifest(b))
    notes: list[str] = []
    change = compare_manifests(ma, mb) if ma is not None and mb is not None else None
    if (ma is None) != (mb is None):
        notes.append(f"only {label_a if ma else label_b} has {MANIFEST}: one image is not bootable, so "
                     "measurements cannot be compared")
    if change is not None and change.firmware:
        notes.append("the images were measured with different firmware: MRTD and RTMR0 compare firmware, "
                     "RTMR1 and RTMR2 still compare the images")
    return ImageDiff(report, change, tuple(notes))


# -- the deep report ----------------------------------------------------------------------------

MAX_REPORT = 256 << 10  # bytes of diffoscope text kept
TIMEOUT = 900.0


def available() -> bool:
    return process.which("diffoscope", process.host_env()["PATH"]) is not None


def diffoscope(a: Path, b: Path) -> str | None:
    """diffoscope's text report of `a` against `b`, or None when diffoscope is not installed."""
    if not available():
        return None
    argv = ["diffoscope", "--text", "-", "--no-progress", "--exclude-directory-metadata", "yes",
            "--max-text-report-size", str(MAX_REPORT), os.fspath(a), os.fspath(b)]
    try:
        done = process.run(argv, env=process.host_env({"TZ": "UTC", "LC_ALL": "C.UTF-8"}), check=False,
                           timeout=TIMEOUT, what="diffoscope")
    except CommandError as e:
        return f"(diffoscope did not report: {e.message})\n"
    if done.returncode == 0:
        return "diffoscope: no differences\n"
    text = done.stdout.decode("utf-8", "replace")[:MAX_REPORT]
    if done.returncode != 1:
        text += f"\n(diffoscope exited with status {done.returncode}: " \
                f"{done.stderr.decode('utf-8', 'replace').strip()[-400:]})\n"
    return text

"""Difference reports between artifacts and images (L2): what differs, where inside, which measurement moves."""

from __future__ import annotations

from tdxstore.diff.archive import Entry, initrd_entries, packages, services, tar_entries
from tdxstore.diff.artifact import compare_bytes, compare_paths, sniff
from tdxstore.diff.image import ImageDiff, check_image, diff_images, diffoscope
from tdxstore.diff.measurement import EventChange, MeasurementChange, State, cause, compare_manifests
from tdxstore.diff.report import Change, Finding, Report

__all__ = [
    "Change", "Entry", "EventChange", "Finding", "ImageDiff", "MeasurementChange", "Report", "State", "cause",
    "check_image", "compare_bytes", "compare_manifests", "compare_paths", "diff_images", "diffoscope",
    "initrd_entries", "packages", "services", "sniff", "tar_entries",
]

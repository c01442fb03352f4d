"""The parts of `tdx build --check` that need no mkosi run: which paths a second store shares (content-
addressed ones only, references first, re-hashed), and the store's build and check records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tdxstore._fs import make_writable_tree
from tdxstore.errors import StoreError
from tdxstore.image.check import _fixed_closure, share_debs, share_fixed
from tdxstore.image.record import (
    BuildRecord,
    CheckRecord,
    note_build,
    read_build,
    read_check,
    write_build,
    write_check,
)
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


def _inputs(store: Store, tmp_path: Path) -> tuple[StorePath, StorePath, StorePath]:
    (tmp_path / "pkg.deb").write_bytes(b"a pinned package\n")
    flat = store.add_flat(tmp_path / "pkg.deb")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mkosi.conf").write_text(f"[Content]\nExtraTrees={flat.logical}\n")
    config = store.add_path(tmp_path / "config", "config", references=[flat])
    drv = store.add_text("image.drv", f"{config.logical} {flat.logical}".encode(), references=[config, flat])
    return flat, config, drv


def test_only_content_addressed_paths_are_shared_references_first(store: Store, tmp_path: Path) -> None:
    flat, config, drv = _inputs(store, tmp_path)
    assert _fixed_closure(store, drv) == [flat, config]  # the .drv (text:) is not shared, refs come first
    second = Store.open(tmp_path / "second")
    try:
        assert share_fixed(store, second, [flat, config]) == 2
        for sp in (flat, config):
            assert second.query(sp).nar_hash == store.query(sp).nar_hash
            assert second.query(sp).ca == store.query(sp).ca
        assert second.references(config) == [flat]
    finally:
        second.close()


def test_a_damaged_input_is_not_shared(store: Store, tmp_path: Path) -> None:
    flat, _config, _drv = _inputs(store, tmp_path)
    real = store.real_path(flat)
    make_writable_tree(real.parent)
    os.chmod(real, 0o644)
    real.write_bytes(b"tampered\n")
    second = Store.open(tmp_path / "second")
    try:
        with pytest.raises(StoreError) as e:
            share_fixed(store, second, [flat])
        assert e.value.code == "hash-mismatch" and not second.is_valid(flat)
    finally:
        second.close()


def test_debs_are_hard_linked(store: Store, tmp_path: Path) -> None:
    cache = store.home / "cache/mkosi/packages/cache/apt/archives"
    cache.mkdir(parents=True)
    (cache / "hello_2.10_amd64.deb").write_bytes(b"deb")
    (cache / "lock").write_bytes(b"")
    second = Store.open(tmp_path / "second")
    try:
        assert share_debs(store, second) == 1
        linked = second.home / "cache/mkosi/packages/cache/apt/archives/hello_2.10_amd64.deb"
        assert linked.stat().st_ino == (cache / "hello_2.10_amd64.deb").stat().st_ino
    finally:
        second.close()


def test_build_and_check_records_round_trip(store: Store, tmp_path: Path) -> None:
    flat, _config, _drv = _inputs(store, tmp_path)
    assert read_build(store, flat) is None and read_check(store, flat) is None
    rec = BuildRecord(str(flat), "/x/TDXfile", 1700000000, 12.5, 1, "unset", "/x/tmp")
    write_build(store, flat, rec)
    assert read_build(store, flat) == rec
    check = CheckRecord(str(flat), 1700000100, True, 30.0, ("parallel jobs: -j 1 -> -j 2",), ("clock",))
    write_check(store, flat, check)
    assert read_check(store, flat) == check
    (store.home / "records-v1/checks" / f"{flat.base_name}.json").write_text("{not json")
    assert read_check(store, flat) is None  # unreadable: not recorded, never an error


def _manifest_image(store: Store, tmp_path: Path, name: str, rtmr2: str, cmdline: str) -> StorePath:
    d = tmp_path / name
    d.mkdir()
    events = [{"register": "RTMR2", "type": "EV_EVENT_TAG", "description": f"kernel command line '{cmdline}'",
               "digest": rtmr2 * 48}]
    values = {"MRTD": "aa" * 48, "RTMR0": None, "RTMR1": "bb" * 48, "RTMR2": rtmr2 * 48}
    (d / "measurements.json").write_text(json.dumps({"measurements": values, "events": events}))
    return store.add_path(d, f"{name}-uki")


def test_a_rebuild_that_moves_a_measurement_says_so(store: Store, tmp_path: Path) -> None:
    tdxfile = tmp_path / "TDXfile"
    tdxfile.write_text("")
    a = _manifest_image(store, tmp_path, "a", "01", "console=ttyS0")
    b = _manifest_image(store, tmp_path, "b", "02", "console=ttyS0 quiet")
    assert note_build(store, tdxfile, a) is None  # the first build of this TDXfile
    assert note_build(store, tdxfile, a) is None  # the same image again
    line = note_build(store, tdxfile, b)
    assert line is not None and line.startswith(f"since the last build of this TDXfile ({a.hash_part[:8]}): ")
    assert line.endswith("kernel command line changed: moves RTMR2; leaves MRTD and RTMR1 alone; "
                         "RTMR0 not predicted")

"""The airgap scenario on the example image (slow): examples/minimal, built in the persistent test
store (usually a lookup), exported as a TDXfile target (everything that rebuilds it), imported into an
empty store B, then built again in B with `--offline` inside a network namespace without network
(`unshare -n`): the same image path, and nothing built — B gains no path the bundle did not hold.
Store B and the bundle (a few GB) are removed when the test passes; the bundle goes as soon as it is
imported, so the peak is one extra store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tests.e2e.buildhelp import MINIMAL, REPO, build
from tests.storefixtures import TEST_STORE

pytestmark = [pytest.mark.slow, pytest.mark.needs_bwrap,
              pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                 reason="needs unshare -n (util-linux) as root")]


def _tdx(home: Path, *args: str | Path, netns: bool = False, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TDX_HOME": str(home), "TDX_CONFIG": str(home.parent / "no-config.toml"),
           "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tdxstore.cli.app", *map(str, args)]
    if netns:
        argv = ["unshare", "-n", "--", *argv]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_example_image_rebuilds_offline_from_a_bundle_in_an_empty_store(tmp_path: Path) -> None:
    _run, image = build(TEST_STORE, MINIMAL, tmp_path / "out-a", "uki")
    bundle, b = tmp_path / "minimal.tdx", tmp_path / "b"

    exported = _tdx(TEST_STORE, "store", "export", MINIMAL, "-o", bundle)
    assert exported.returncode == 0, exported.stderr
    assert "warning: not in this store" not in exported.stderr, exported.stderr  # the whole rebuild closure
    size = bundle.stat().st_size
    imported = _tdx(b, "store", "import", bundle)
    assert imported.returncode == 0, imported.stderr
    held = set(_tdx(b, "store", "ls").stdout.split())
    assert f"/tdx/store/{image.name}" in held
    bundle.unlink()  # the peak stays at one extra store

    again = _tdx(b, "build", MINIMAL, "--offline", "-o", tmp_path / "out-b", netns=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"/tdx/store/{image.name}", again.stdout
    assert "up to date:" in again.stderr and "building" not in again.stderr, again.stderr
    assert set(_tdx(b, "store", "ls").stdout.split()) == held  # nothing built that the bundle did not hold
    verify = _tdx(b, "store", "verify")
    assert verify.returncode == 0, verify.stderr
    print(f"airgap bundle of examples/minimal: {len(held)} paths, {size / (1 << 20):.0f} MiB; "
          f"{imported.stderr.strip().splitlines()[-1]}")
    remove_tree(b)
    assert not b.exists()

"""Session fixtures for the measurement tests: pinned Debian firmware, kernel, stub and a UKI built from them.

Assets are downloaded once (apt, sha256-verified) and cached under /var/tmp by `tests.measure_assets`.
Point TDX_MEASURE_UKI at another UKI (e.g. the example image's) to run the UKI tests against it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import measure_assets

CMDLINE = measure_assets.UNIT_CMDLINE


@pytest.fixture(scope="session")
def kernel_path() -> Path:
    return measure_assets.kernel()


@pytest.fixture(scope="session")
def stub_path() -> Path:
    return measure_assets.stub()


@pytest.fixture(scope="session")
def trixie_ovmf() -> bytes:
    return measure_assets.trixie_ovmf().read_bytes()


@pytest.fixture(scope="session")
def uki_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("TDX_MEASURE_UKI"):
        return Path(os.environ["TDX_MEASURE_UKI"])
    work = tmp_path_factory.mktemp("uki")
    return measure_assets.build_uki(work / "test.efi", b"tiny initrd\n" * 3, CMDLINE)


@pytest.fixture(scope="session")
def disk_path(tmp_path_factory: pytest.TempPathFactory, uki_path: Path) -> Path:
    return measure_assets.build_disk(tmp_path_factory.mktemp("disk") / "disk.img", uki_path)

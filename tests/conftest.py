"""Shared pytest wiring: markers by directory and skipping of `needs_*` tests when a tool is absent.

Tests under tests/e2e/ get the `e2e` marker automatically. A `needs_<tool>` test is skipped only
when that tool is really missing on this machine (CI installs every tool, so nothing is skipped
there); it is never skipped for any other reason. Under TDX_NO_SKIPS=1 (scripts/test sets it) every
skip is reported as a failure instead (but one for a missing capability, CAP_…): a tool the suite needs
but scripts/setup does not install shows up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree

pytest_plugins = ["tests.storefixtures"]

TESTS = Path(__file__).parent

# marker -> executables it needs on PATH
NEEDS = {
    "needs_bwrap": ("bwrap",),
    "needs_nix": ("nix-store", "nix-hash"),
}


PASSED = pytest.StashKey[bool]()


@pytest.fixture
def tmp_path(tmp_path: Path, request: pytest.FixtureRequest) -> Generator[Path, None, None]:
    """pytest's `tmp_path`, removed as soon as the test has passed (a failed test's stays to be read).

    Image builds in empty stores write gigabytes each; kept to the end of the session they filled CI's
    disk. A tree that cannot be removed (a mount a test left behind) is left and reported by pytest.
    """
    yield tmp_path
    if request.node.stash.get(PASSED, False):
        try:
            remove_tree(tmp_path)
        except OSError as e:
            request.node.warn(pytest.PytestWarning(f"could not remove {tmp_path}: {e}"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if (TESTS / "e2e") in path.parents:
            item.add_marker(pytest.mark.e2e)
        for marker, tools in NEEDS.items():
            if item.get_closest_marker(marker) is None:
                continue
            missing = [t for t in tools if shutil.which(t) is None]
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"{', '.join(missing)} not installed"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[PASSED] = report.passed
    if os.environ.get("TDX_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "CAP_" in reason:  # a capability the host withholds (mknod), not something setup could install
            return
        report.outcome = "failed"
        report.longrepr = f"skipped under TDX_NO_SKIPS=1 (scripts/setup must install what it needs): {reason}"

"""`tdx build --check` and `tdx diff` end to end, on real mkosi builds in the persistent test store.

TDX_HOME=${TDX_TEST_STORE:-/var/tmp/tdx-test-store}, so first builds are shared with tests/e2e/test_build.py
and later runs. Each `--check` is a second full build in a temporary store (about 4.5 GB), which the command
removes itself; the tests assert that it did. Variants of examples/minimal are copied into tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.buildhelp import MINIMAL, build, tdx

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
pytestmark = pytest.mark.slow


def _variant(tmp_path: Path, name: str, extra: str) -> Path:
    """examples/minimal with `extra` appended to its TDXfile."""
    d = tmp_path / name
    shutil.copytree(MINIMAL, d)
    (d / "TDXfile").write_text((d / "TDXfile").read_text() + "\n" + extra + "\n")
    return d


def _leftovers() -> list[str]:
    return sorted(p.name for p in (TEST_STORE / "tmp").glob("check-*"))


def test_check_of_minimal_is_clean(tmp_path: Path) -> None:
    _first, image = build(TEST_STORE, MINIMAL, tmp_path / "out", "uki")
    before = _leftovers()
    run = tdx(TEST_STORE, "build", MINIMAL, "--check", "-f", "uki", timeout=5400)
    assert run.rc == 0, str(run)
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"reproduced: /tdx/store/{image.name}"), run.stdout
    assert "varied: parallel jobs" in run.stderr and "not varied: clock" in run.stderr
    assert _leftovers() == before  # the temporary store is gone
    info = tdx(TEST_STORE, "store", "path-info", image)
    assert "checked:       reproduced at" in info.stdout, str(info)
    record = json.loads(tdx(TEST_STORE, "store", "path-info", image, "--json").stdout)[0]["check"]
    assert record["reproduced"] is True and record["varied"]
    print(f"check of examples/minimal: {run.seconds:.0f} s")


def test_check_catches_the_build_time(tmp_path: Path) -> None:
    tdxfile = _variant(tmp_path, "dated", 'image.run("date +%s.%N > /etc/built")')
    _, image = build(TEST_STORE, tdxfile, tmp_path / "out", "tar")
    before = _leftovers()
    run = tdx(TEST_STORE, "build", tdxfile, "--check", "-f", "tar", "--json", timeout=5400)
    assert run.rc == 1, str(run)
    assert [line for line in run.stderr.splitlines() if line.startswith("error:")] == [
        f"error: the second build of /tdx/store/{image.name} differs in image.tar"]
    out = json.loads(run.stdout)
    assert out["reproduced"] is False
    built = [f for f in out["diff"]["report"]["findings"] if f["where"] == ["image.tar", "etc/built"]]
    assert len(built) == 1, out["diff"]["report"]["findings"]
    minus = [d for d in built[0]["detail"] if d.startswith("-") and not d.startswith("---")]
    plus = [d for d in built[0]["detail"] if d.startswith("+") and not d.startswith("+++")]
    assert len(minus) == len(plus) == 1 and minus[0][1:] != plus[0][1:]  # both build times are shown
    assert _leftovers() == before


def test_diff_names_the_command_line_and_the_file(tmp_path: Path) -> None:
    base = _variant(tmp_path, "base", "")
    cmdline = _variant(tmp_path, "cmdline", 'image.kernel.cmdline("quiet")')
    message = _variant(tmp_path, "message", "").joinpath("TDXfile")
    message.write_text(message.read_text().replace("hello from a TDX guest", "hello from a changed guest"))
    for d in (base, cmdline, message.parent):
        build(TEST_STORE, d, tmp_path / f"out-{d.name}", "uki")
    run = tdx(TEST_STORE, "diff", tmp_path / "out-base" / "minimal", tmp_path / "out-cmdline" / "minimal", "--json")
    assert run.rc == 1, str(run)
    m = json.loads(run.stdout)["measurements"]
    assert m["registers"]["MRTD"] == "unchanged" and m["registers"]["RTMR2"] == "moved"
    assert m["causes"][0] == "kernel command line"
    assert any(e["cause"] == "kernel command line" and e["b"] and "quiet" in e["b"] for e in m["events"])
    run = tdx(TEST_STORE, "diff", base, message.parent)  # TDXfiles: looked up (already built)
    assert run.rc == 1, str(run)
    head = run.stdout.splitlines()[0]
    assert head.startswith("initrd content") and "moves" in head and "RTMR2" in head and "MRTD alone" in head
    assert "because: initrd content: etc/hello-tdx/message changed" in run.stdout
    assert "+hello from a changed guest" in run.stdout

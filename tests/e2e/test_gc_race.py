"""gc racing the commands that make result links: a rooted path is never deleted.

Each round unroots the output, queues a `tdx store gc` behind a GC guard the test holds, starts
`tdx realise -o` or `tdx build -o`, and lets go of the test's guard once the command holds one
(flock states read from /proc/locks). gc then runs the moment the command releases its guard: the
command must have made its root by then. Before the fix the root was made after the release.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap.busybox import busybox_available, make_busybox_root
from tdxstore.image import pipeline
from tdxstore.store.gc import add_root
from tdxstore.store.store import Store
from tests.e2e.buildhelp import MINIMAL

pytestmark = [pytest.mark.needs_bwrap,
              pytest.mark.skipif(not busybox_available(), reason="busybox-static not installed")]
REPO = Path(__file__).parents[2]
ROUNDS = 20


def _cli(home: Path, *args: str | Path, **kw: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TDX_HOME": str(home),
           # nothing in these tests may download: a closed proxy makes an accidental fetch fail fast
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    return subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def _gc_lock_holders(home: Path) -> dict[int, str]:
    """pid -> "READ"/"WRITE" for flocks on the store's gc.lock, "WAIT" for a blocked request."""
    ino = os.stat(home / "locks" / "gc.lock").st_ino
    found: dict[int, str] = {}
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        blocked = len(f) > 1 and f[1] == "->"
        if blocked:
            del f[1]
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino):
            found[int(f[4])] = "WAIT" if blocked else f[3]
    return found


def _wait_for(home: Path, proc: subprocess.Popen[bytes], state: str) -> bool:
    """Wait until `proc` reaches `state` on gc.lock; False if it exits first."""
    deadline = time.monotonic() + 60
    while _gc_lock_holders(home).get(proc.pid) != state:
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"pid {proc.pid} never reached {state}"
        time.sleep(0.001)
    return True


def _race(home: Path, argv: list[str | Path], link: Path) -> tuple[bytes, bool]:
    """gc queued behind the command's GC guard, so it runs the moment the command releases the guard.

    Returns the command's stdout and whether the race was staged (the command was seen holding the
    guard while gc waited; a command that held it too briefly to be seen is not counted)."""
    if link.is_symlink():
        link.unlink()  # unrooted: only the command's own root can keep the path alive
    store = Store.open(home)
    try:
        with store.gc_guard():  # stands for another build in progress, so that gc queues first
            gc = _cli(home, "store", "gc")
            assert _wait_for(home, gc, "WAIT"), gc.communicate()
            cmd = _cli(home, *argv)
            staged = _wait_for(home, cmd, "READ")
    finally:
        store.close()
    out, err = cmd.communicate(timeout=300)
    _, gc_err = gc.communicate(timeout=300)
    assert cmd.returncode == 0, err.decode()
    assert gc.returncode == 0, gc_err.decode()
    return out, staged


def _check_rooted(home: Path, link: Path) -> None:
    assert link.is_symlink(), link
    store = Store.open(home)
    try:
        sp = store.parse(link)
        assert store.is_valid(sp) and store.real_path(sp).exists(), f"{link} -> {sp} was deleted"
    finally:
        store.close()


def test_gc_racing_realise_out_link_never_deletes_the_rooted_output(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    busybox = store.add_path(make_busybox_root(tmp_path / "bb"), "busybox-root")
    add_root(store, tmp_path / "busybox-link", busybox)  # the builder's root stays; only outputs race
    store.close()
    expr = tmp_path / "raced.py"
    expr.write_text(
        "import os\nfrom tdxstore.store.derivation import derivation\nfrom tdxstore.store.path import StorePath\n"
        f"default = derivation('raced-' + os.environ['ROUND'], '/bin/sh', ['-c', 'sleep 0.3; mkdir $out; "
        f"echo $ROUND > $out/v'], root=StorePath.parse({busybox.logical!r}), env={{'ROUND': os.environ['ROUND']}})\n")
    link = tmp_path / "res"
    staged = 0
    for i in range(ROUNDS * 3):
        if staged >= ROUNDS:
            break
        os.environ["ROUND"] = str(i // 2)  # odd rounds find the output valid, even rounds build it
        try:
            out, raced = _race(home, ["realise", f"{expr}", "-o", link], link)
        finally:
            del os.environ["ROUND"]
        staged += raced
        _check_rooted(home, link)
        assert out.decode().strip().endswith(f"-raced-{i // 2}")
    assert staged >= ROUNDS, staged


def test_gc_racing_build_out_link_never_deletes_the_rooted_image(tmp_path: Path) -> None:
    """`tdx build -o` of an image that is valid already: the real root-creation path, no mkosi run."""
    home = tmp_path / "home"
    store = Store.open(home)
    p = pipeline.image_derivation(store, pipeline.evaluate(MINIMAL / "TDXfile", "tar"))
    assert p.derivation is not None
    with store.temp_dir("fake-image") as tmp:  # stands in for mkosi's output: this test is about roots
        (tmp / "out").mkdir()
        (tmp / "out" / "image.tar").write_bytes(b"not really a tar\n")
        with store.path_locks([p.derivation.out]):
            store.install(tmp / "out", p.derivation.out)
    image = p.derivation.out
    store.close()
    out = tmp_path / "out"
    staged = 0
    for _ in range(ROUNDS * 3):
        if staged >= ROUNDS:
            break
        printed, raced = _race(home, ["build", MINIMAL / "TDXfile", "-o", out, "--format", "tar"],
                               out / "minimal")
        staged += raced
        assert printed.decode().strip() == image.logical
        _check_rooted(home, out / "minimal")
    assert staged >= ROUNDS, staged

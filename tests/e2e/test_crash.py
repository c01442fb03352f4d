"""Crash safety: `tdx store add` and `tdx realise` killed with SIGKILL at random moments never leave
a valid but incomplete path or a running process; `verify` is clean after every kill and gc removes
the leftovers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap.busybox import busybox_available, make_busybox_root
from tdxstore.store.gc import add_root, collect_garbage, stale_temporaries
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store
from tests.procs import pids_with

REPO = Path(__file__).parents[2]
KILLS = 24


def _big_tree(root: Path) -> Path:
    rnd = random.Random(7)
    for i in range(40):
        d = root / f"d{i:02}"
        d.mkdir(parents=True)
        for j in range(25):
            (d / f"f{j}").write_bytes(rnd.randbytes(rnd.choice([10, 1000, 100_000])))
    (root / "big").write_bytes(rnd.randbytes(8 << 20))
    return root


def test_sigkill_during_add_never_leaves_a_broken_valid_path(tmp_path: Path) -> None:
    src = _big_tree(tmp_path / "src")
    home = tmp_path / "home"
    Store.open(home).close()
    env = {**os.environ, "TDX_HOME": str(home)}
    rnd = random.Random(1234)
    # how long an uninterrupted add takes, to spread the kills over its whole life
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tdxstore.cli.app", "store", "add", str(src), "--name", "probe"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    span = time.monotonic() - t0
    killed = 0
    for i in range(KILLS * 3):
        if killed >= KILLS:
            break
        name = f"t{i % 6}"  # some names repeat: later adds meet earlier leftovers
        proc = subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", "store", "add", str(src),
                                 "--name", name], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.0, span * 0.95))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        store = Store.open(home)
        report = verify_store(store)
        assert report.ok, (i, report)
        store.close()
    assert killed >= 20, killed
    store = Store.open(home)
    collect_garbage(store)
    final = store.add_path(src, "t0")
    assert store.is_valid(final)
    report = verify_store(store)
    assert report.ok and report.garbage == ()


@pytest.mark.needs_bwrap
@pytest.mark.skipif(not busybox_available(), reason="busybox-static not installed")
def test_sigkill_during_realise_leaves_no_broken_path_and_no_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    root = store.add_path(make_busybox_root(tmp_path / "bb"), "busybox-root")
    add_root(store, tmp_path / "busybox-link", root)  # the final gc keeps the builders' root
    store.close()
    marker = f"crash-probe-{os.getpid()}"
    expr = tmp_path / "crash.py"
    # writes 30 files over about a second, in the sandbox: kills land before, during and after the build
    expr.write_text(
        "import os\nfrom tdxstore.store.derivation import derivation\nfrom tdxstore.store.path import StorePath\n"
        "default = derivation('crash-' + os.environ['NAME'], '/bin/sh', ['-c', 'mkdir -p $out/d; for i in "
        f"$(seq 30); do head -c 100000 /dev/urandom > $out/d/f$i; sleep 0.03; done # {marker}'], "
        f"root=StorePath.parse({root.logical!r}), env={{'NAME': os.environ['NAME']}})\n")

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", "realise", str(expr)], cwd=REPO,
                                env={**os.environ, "TDX_HOME": str(home), "NAME": name},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    t0 = time.monotonic()
    assert start("warm").wait() == 0
    span = time.monotonic() - t0
    rnd = random.Random(4321)
    killed = 0
    for i in range(KILLS * 3):
        if killed >= KILLS:
            break
        proc = start(f"t{i % 6}")  # names repeat: later builds meet the leftovers of killed ones
        time.sleep(rnd.uniform(0.0, span * 0.95))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        deadline = time.monotonic() + 5  # bwrap --die-with-parent, then the PID namespace goes
        while pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pids_with(marker) == [], i
        store = Store.open(home)
        report = verify_store(store)
        assert report.ok, (i, report)
        store.close()
    assert killed >= 20, killed
    store = Store.open(home)
    collect_garbage(store)
    assert stale_temporaries(store) == [] and os.listdir(home / "tmp") == []
    report = verify_store(store)
    assert report.ok and report.garbage == ()
    store.close()
    assert start("t0").wait() == 0

"""Crash safety: `tdx store add` killed with SIGKILL at random moments never leaves a valid but
incomplete path; `verify` is clean after every kill and gc removes the leftovers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tdxstore.store.gc import collect_garbage
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store

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

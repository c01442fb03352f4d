"""Cost of realisation beyond bubblewrap, and of a no-op re-realise.

Prints, in one run on this machine:
  1. a bare `bwrap … /bin/true` (the same isolation flags, busybox root) — the baseline;
  2. a trivial derivation (`/bin/true`, a fresh one each time) through `realise` — overhead = 2 - 1;
  3. a no-op re-realise of a 100-derivation graph (everything valid), against goal 1 s.
Usage: .venv/bin/python benchmarks/bench_realise.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap.busybox import make_busybox_root
from tdxstore.store.derivation import derivation
from tdxstore.store.realise import realise
from tdxstore.store.store import Store


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tree = make_busybox_root(Path(tmp) / "root")
        store = Store.open(Path(tmp) / "home")
        root = store.add_path(tree, "busybox-root")
        real_root = str(store.real_path(root))
        bare = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv", "--ro-bind", real_root, "/",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true"]
        bw = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(bare, check=True)
            bw.append(time.perf_counter() - t)
        rl = []
        for i in range(n):
            drv = derivation(f"trivial-{i}", "/bin/true", [], root=root)
            t = time.perf_counter()
            realise(store, [drv])
            rl.append(time.perf_counter() - t)
        layer = [derivation(f"g0-{i}", "/bin/sh", ["-c", "touch $out/done"], root=root) for i in range(10)]
        graph = list(layer)
        for lvl in range(1, 10):
            layer = [derivation(f"g{lvl}-{i}", "/bin/sh", ["-c", "touch $out/done"], root=root, inputs=layer)
                     for i in range(10)]
            graph += layer
        t = time.perf_counter()
        realise(store, graph)
        first = time.perf_counter() - t
        noop = []
        for _ in range(5):
            t = time.perf_counter()
            r = realise(store, graph)
            noop.append(time.perf_counter() - t)
            assert not r.built
        b, r_ = statistics.median(bw) * 1000, statistics.median(rl) * 1000
        print(f"{'measure':<52}{'median':>12}{'ratio':>10}")
        print(f"{'bare bwrap /bin/true (baseline)':<52}{b:>9.1f} ms{1.0:>10.2f}")
        print(f"{'tdx realise of a trivial derivation':<52}{r_:>9.1f} ms{r_ / b:>10.2f}")
        print(f"{'  overhead beyond bwrap (goal < 50 ms)':<52}{r_ - b:>9.1f} ms")
        print(f"{'first realise, 100-derivation graph (10x10)':<52}{first * 1000:>9.1f} ms{first * 1000 / b:>10.2f}")
        nm = statistics.median(noop) * 1000
        print(f"{'no-op re-realise, 100-derivation graph (goal < 1 s)':<52}{nm:>9.1f} ms{nm / b:>10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)

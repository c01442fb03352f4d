"""GoBuild rebuilds: a lookup when nothing changed, only the go build step after one source edit, against bare go.

Uses the persistent test store (TDX_TEST_STORE, default /var/tmp/tdx-test-store) and a tdx.lock in a
temporary project, so Debian's Go 1.22 and the build root are realised once (the first run downloads
them). Rows: a warm `Lowering` + `realise` of the unchanged tree (add the source, find the output
valid), the same after editing main.go (only the build derivation runs), and the baseline: Go's own
`go build` of the same tree on the host with the same toolchain, flags and an empty GOCACHE (the
sandbox build starts with an empty one too). Usage: .venv/bin/python benchmarks/bench_builders.py

Measured (2 cores, a CI run going on): lookup 0.039 s (0.00x bare), edit 6.2 s (0.72x), bare 8.7 s.
Before the bootstrap root was remembered per busybox .deb in `packages/repo.py` (it was unpacked and
hashed again for the root and the toolchain on every call), the lookup took 0.8-2.0 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore.builders.go import GoBuild
from tdxstore.builders.toolchain import debian_go
from tdxstore.cli.builds import Lowering
from tdxstore.lock.lockfile import Lockfile, dump_lock
from tdxstore.sandbox import process
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
MAIN = 'package main\n\nimport (\n\t"fmt"\n\t"strings"\n)\n\nfunc main() {{ fmt.Println(strings.Repeat("x", {n})) }}\n'


def _tree(where: Path, n: int) -> None:
    (where / "app").mkdir(parents=True, exist_ok=True)
    (where / "app" / "go.mod").write_text("module example.com/bench\n\ngo 1.22\n")
    (where / "app" / "main.go").write_text(MAIN.format(n=n))


def main() -> None:
    store = Store.open(STORE)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        project = Path(tmp) / "project"
        _tree(project, 1)
        (project / "tdx.lock").write_text(dump_lock(Lockfile("sha256:" + "0" * 64)))
        build = GoBuild(src="./app/", output="/usr/local/bin/bench", compiler=debian_go("1.22"))
        lower = Lowering(store, project)
        realise(store, [lower(build)])  # first: lock and realise root and toolchain, build once

        warm = []
        for _ in range(5):
            t = time.perf_counter()
            result = realise(store, [Lowering(store, project)(build)])
            warm.append(time.perf_counter() - t)
            assert not result.built
        rows.append(("rebuild, nothing touched (lookup)", statistics.median(warm), "median of 5, 0 built"))

        edits = []
        fresh = time.time_ns() % 10**9  # an edit no earlier run made: the persistent store cannot hold its output
        for i in range(3):
            _tree(project, fresh + i)
            t = time.perf_counter()
            result = realise(store, [Lowering(store, project)(build)])
            edits.append(time.perf_counter() - t)
            names = sorted(d.name for d in result.built)
            assert names == ["bench"], names
        rows.append(("rebuild after editing main.go", statistics.median(edits), "median of 3, built: bench"))

        go_request = next(r.request for r in lower.lock.roots if r.request.prefix)
        goroot = store.real_path(lower.realise(go_request))
        bare = []
        for i in range(3):
            work = Path(tmp) / f"bare{i}"
            shutil.copytree(project / "app", work)
            env = {"GOROOT": str(goroot), "GOCACHE": str(Path(tmp) / f"cache{i}"), "GOPATH": str(Path(tmp) / "gp"),
                   "GOPROXY": "off", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
                   "HOME": tmp, "PATH": "/usr/bin:/bin"}
            t = time.perf_counter()
            process.run([str(goroot / "bin" / "go"), "build", "-trimpath", "-buildvcs=false", "-ldflags", "-buildid=",
                         "-o", str(work / "bench"), "."], cwd=work, env=env, what="bare go build")
            bare.append(time.perf_counter() - t)
        rows.append(("baseline: bare go build, same tree, empty GOCACHE", statistics.median(bare), "median of 3"))
    store.close()
    base = rows[-1][1]
    print(f"{'step':<52} {'seconds':>8} {'x bare':>7}  note")
    for name, secs, note in rows:
        print(f"{name:<52} {secs:8.3f} {secs / base:7.2f}  {note}")


if __name__ == "__main__":
    main()

"""Benchmark `tdx store import` with the C restorer and with the Python parser against `zstd -d | tar -x`.

Plain script, not a test: `.venv/bin/python benchmarks/bench_import.py [--dir /dev/shm] [--mib 1024] [--runs 3]`.
The closure is `bench_transfer.py`'s (8 paths, half 4 MiB random files, half 4 KiB text files); the
three imports run in turn, round after round, in this one process run (best of --runs, warm page
cache), so load that comes and goes touches all three alike. The default target is a tmpfs: file
creation on this machine's disk swings from 20 µs to 0.5 ms (docs/store.md), which swamps every
ratio; `--dir /var/tmp` measures the disk. Ratios are against the tar baseline (below 1.0: faster);
CPU is user + system of the child processes (getrusage). Every temporary file is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_transfer import TDX, MiB, cpu, make_tree, tar_zstd, unzstd_tar
from tdxstore._fs import remove_tree
from tdxstore.store.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.dir))
    try:
        src, store = work / "src", Store.open(work / "a")
        paths = []
        for n in range(8):
            make_tree(src / f"p{n}", args.mib * MiB // 8, n)
            paths.append(store.add_path(src / f"p{n}", f"part{n}"))
        store.close()
        remove_tree(src)
        env = {**os.environ, "TDX_HOME": str(work / "a")}
        subprocess.run([*TDX, "store", "export", *(p.logical for p in paths), "-o", str(work / "b.tdx")], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        dirs = [str(store.real_path(p).relative_to(work / "a" / "store")) for p in paths]
        tar_zstd(work / "a" / "store", dirs, work / "b.tar.zst")
        remove_tree(work / "a")
        wall: dict[str, list[float]] = {"tar": [], "c": [], "python": []}
        cpus: dict[str, list[float]] = {k: [] for k in wall}
        loads = []
        for _ in range(args.runs):
            for impl in ("c", "python"):
                remove_tree(work / "b")
                env_b = {**os.environ, "TDX_HOME": str(work / "b"), "TDX_NAR_PYTHON": "1" if impl == "python" else "0"}
                t0, c0 = time.perf_counter(), cpu()
                subprocess.run([*TDX, "store", "import", str(work / "b.tdx")], env=env_b, check=True,
                               stdout=subprocess.DEVNULL)
                wall[impl].append(time.perf_counter() - t0)
                cpus[impl].append(cpu() - c0)
            remove_tree(work / "x")
            t0, c0 = time.perf_counter(), cpu()
            unzstd_tar(work / "b.tar.zst", work / "x")
            wall["tar"].append(time.perf_counter() - t0)
            cpus["tar"].append(cpu() - c0)
            loads.append(os.getloadavg()[0])
        base, base_cpu = min(wall["tar"]), min(cpus["tar"])
        print(f"closure: {len(paths)} paths, {args.mib} MiB, target {args.dir}; best of {args.runs}; load average "
              f"after each round {', '.join(f'{x:.1f}' for x in loads)}")
        print(f"{'import':24} {'wall s':>7} {'MiB/s':>6} {'ratio':>6} {'cpu s':>6} {'cpu ratio':>9}  all wall s")
        names = {"tar": "zstd -d | tar -x", "c": "tdx (C restorer)", "python": "tdx (TDX_NAR_PYTHON=1)"}
        for key in ("tar", "c", "python"):
            t, c = min(wall[key]), min(cpus[key])
            print(f"{names[key]:24} {t:7.2f} {args.mib / t:6.0f} {t / base:6.2f} {c:6.2f} {c / base_cpu:9.2f}  "
                  + " ".join(f"{x:.2f}" for x in wall[key]))
        print(f"C restorer vs Python parser: wall {min(wall['c']) / min(wall['python']):.2f}, "
              f"cpu {min(cpus['c']) / min(cpus['python']):.2f}")
    finally:
        remove_tree(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

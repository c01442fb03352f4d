"""Benchmark store ingestion against Nix: `tdx store add` vs `nix-store --add`, hash+scan, start-up.

Plain script, not a test: `.venv/bin/python benchmarks/bench_store.py [--dir /var/tmp] [--runs 3] [--quick]`.
Every figure is measured in this one process run (best of --runs, warm page cache; each add goes into
a fresh, empty store), so the ratios (tdx / baseline; below 1.0 means tdx is faster) compare like
with like on this machine. On a shared machine wall time swings with the load, so the adds also show
the CPU time (user + system) of the command, which other processes disturb much less. Inputs: one
256 MiB file, 20,000 small files in 20 directories, one 1 GiB file. Both tools must agree on the
NAR hash of each input, or the script stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore._fs import remove_tree
from tdxstore.store import base32, nar

MiB = 1 << 20
TDX = [str(Path(sys.executable).with_name("tdx"))]
if not Path(TDX[0]).exists():
    TDX = [sys.executable, "-m", "tdxstore.cli.app"]


def make_big(path: Path, size: int) -> Path:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 7:] + block[: i % 7])  # distinct chunks, cheap to make
    return path


def make_small(root: Path, count: int = 20_000, dirs: int = 20) -> Path:
    blob = os.urandom(4096)
    per_dir = count // dirs
    for i in range(count):
        d = root / f"d{i // per_dir:02d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        size = (i * 37) % 2000
        f = d / f"file-{i:05d}.txt"
        f.write_bytes(blob[i % 2000: i % 2000 + size])
        if i % 10 == 0:
            f.chmod(0o755)
    return root


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout.strip()


def run_timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, stdout) of one run of `argv`."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{argv} failed with exit status {proc.returncode}")
        out.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, out.read().decode().strip()


Timing = tuple[float, float, str]  # wall seconds, CPU seconds, NAR hash (hex)


def tdx_add(src: Path, scratch: Path) -> Timing:
    """One `tdx store add` into an empty store, and the NAR hash it recorded."""
    home = Path(tempfile.mkdtemp(prefix="tdx-home-", dir=scratch))
    env = {**os.environ, "TDX_HOME": str(home)}
    run([*TDX, "--help"], env)  # warm the interpreter and its bytecode cache
    try:
        wall, cpu, sp = run_timed([*TDX, "store", "add", str(src)], env)
        info = json.loads(run([*TDX, "store", "path-info", "--json", sp], env))[0]
        return wall, cpu, str(info["narHash"]).removeprefix("sha256:")
    finally:
        remove_tree(home)


def nix_add(src: Path, scratch: Path) -> Timing:
    root = Path(tempfile.mkdtemp(prefix="nix-root-", dir=scratch))
    store = f"local?root={root}"
    try:
        wall, cpu, sp = run_timed(["nix-store", "--store", store, "--add", str(src)])
        got = run(["nix-store", "--store", store, "--query", "--hash", sp]).removeprefix("sha256:")
        return wall, cpu, base32.decode(got).hex() if len(got) == 52 else got
    finally:
        remove_tree(root)


def bench_add(label: str, src: Path, scratch: Path, runs: int) -> None:
    nar.hash_path(src)  # warm the page cache
    results: dict[str, list[Timing]] = {}
    for _ in range(runs):  # interleaved, so both tools meet the same load
        for tool, fn in (("nix", nix_add), ("tdx", tdx_add)):
            results.setdefault(tool, []).append(fn(src, scratch))
    nix_w, nix_c, nix_h = (min(r[0] for r in results["nix"]), min(r[1] for r in results["nix"]),
                           results["nix"][0][2])
    tdx_w, tdx_c, tdx_h = (min(r[0] for r in results["tdx"]), min(r[1] for r in results["tdx"]),
                           results["tdx"][0][2])
    if tdx_h != nix_h:
        raise SystemExit(f"{label}: tdx and nix disagree on the NAR hash: {tdx_h} vs {nix_h}")
    print(f"\nstore add: {label}  (best of {runs}; ratio against nix-store --add)")
    print(f"  {'command':44} {'wall s':>9} {'ratio':>9} {'cpu s':>9} {'ratio':>9}")
    for name, (w, c) in (("nix-store --store local?root=DIR --add", (nix_w, nix_c)),
                         ("tdx store add", (tdx_w, tdx_c))):
        print(f"  {name:44} {w:9.3f} {w / nix_w:8.2f}x {c:9.3f} {c / nix_c:8.2f}x")


def bench_scan(label: str, src: Path, runs: int) -> None:
    candidates = ["0" * 31 + "1", "z" * 32, "abcdfghijklmnpqrsvwxyz0123456789"]

    def measure(fn: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    results: dict[str, list[tuple[float, float]]] = {"hash": [], "scan": []}
    for _ in range(runs):  # interleaved, so both meet the same load
        results["hash"].append(measure(lambda: nar.hash_path(src)))
        results["scan"].append(measure(lambda: nar.hash_and_scan(src, candidates)))
    hash_w, hash_c = (min(r[i] for r in results["hash"]) for i in (0, 1))
    print(f"\nreference scan: {label}  (best of {runs}; ratio against hash_path)")
    print(f"  {'function':44} {'wall s':>9} {'ratio':>9} {'cpu s':>9} {'ratio':>9}")
    for name, key in (("nar.hash_path", "hash"), ("nar.hash_and_scan (3 candidates)", "scan")):
        w, c = (min(r[i] for r in results[key]) for i in (0, 1))
        print(f"  {name:44} {w:9.3f} {w / hash_w:8.2f}x {c:9.3f} {c / hash_c:8.2f}x")


def bench_startup(home: Path, runs: int) -> None:
    env = {**os.environ, "TDX_HOME": str(home)}
    sp = run([*TDX, "store", "add", __file__], env)
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "tdx --help": [*TDX, "--help"],
        "tdx store path-info PATH": [*TDX, "store", "path-info", sp],
        "tdx store add SMALL-FILE (already valid)": [*TDX, "store", "add", __file__],
    }
    print(f"\nstart-up  ({runs} runs each; ratio of medians against python -c pass)")
    print(f"  {'command':44} {'min s':>9} {'median s':>9} {'ratio':>8}")
    medians: dict[str, float] = {}
    for label, argv in cases.items():
        run(argv, env)  # warm
        times = [timed(lambda argv=argv: run(argv, env)) for _ in range(runs)]  # type: ignore[misc]
        medians[label] = statistics.median(times)
        base = medians["python -c pass"]
        print(f"  {label:44} {min(times):9.3f} {medians[label]:9.3f} {medians[label] / base:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to create the test data")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip the 1 GiB file")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up table")
    args = ap.parse_args()
    if not shutil.which("nix-store"):
        raise SystemExit("nix-store not found: install Debian's nix-bin (scripts/setup does)")
    print(f"tdx: {' '.join(TDX)}\n{run(['nix-store', '--version'])}")
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.dir) as tmp:
        work = Path(tmp)
        bench_startup(work / "startup-home", max(10, args.runs))
        remove_tree(work / "startup-home")
        if args.startup_only:
            return
        big = make_big(work / "big-256M", 256 * MiB)
        bench_add("one 256 MiB file", big, work, args.runs)
        big.unlink()
        small = make_small(work / "small")
        bench_add("20,000 small files in 20 directories", small, work, args.runs)
        bench_scan("20,000 small files in 20 directories", small, args.runs)
        remove_tree(small)
        if not args.quick:
            huge = make_big(work / "big-1G", 1024 * MiB)
            bench_add("one 1 GiB file", huge, work, args.runs)
            bench_scan("one 1 GiB file", huge, args.runs)
            huge.unlink()


if __name__ == "__main__":
    main()

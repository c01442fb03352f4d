"""Benchmark NAR hashing against Nix: one 1 GiB file and a tree of 50,000 small files.

Plain script, not a test: `.venv/bin/python benchmarks/bench_nar.py [--dir /var/tmp] [--runs 3] [--small-only]`.
Each figure is the best of --runs warm-cache runs, all measured in the same process run, so the
ratios (tdx / tool; below 1.0 means tdx is faster) compare like with like on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore.store import nar

MiB = 1 << 20


def make_big(path: Path, size: int = 1024 * MiB) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 7:] + block[: i % 7])  # distinct chunks, cheap to make


def make_small(root: Path, count: int = 50_000, per_dir: int = 200) -> None:
    blob = os.urandom(4096)
    for i in range(count):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        size = (i * 37) % 2000
        (d / f"file-{i:05d}.txt").write_bytes(blob[i % 2000: i % 2000 + size])
        if i % 10 == 0:
            (d / f"file-{i:05d}.txt").chmod(0o755)


def best(fn: Callable[[], str], runs: int) -> tuple[float, str]:
    times, result = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def tdx_hash(path: Path) -> str:
    return nar.hash_path(path).hex


def tdx_scan(path: Path) -> str:
    return nar.hash_and_scan(path, ["0" * 31 + "1", "z" * 32])[0].hex


def nix_hash(path: Path) -> str:
    out = subprocess.run(["nix-hash", "--type", "sha256", str(path)], check=True, capture_output=True)
    return out.stdout.decode().strip()


def nix_dump_sha256sum(path: Path) -> str:
    dump = subprocess.Popen(["nix-store", "--dump", str(path)], stdout=subprocess.PIPE)
    out = subprocess.run(["sha256sum"], stdin=dump.stdout, check=True, capture_output=True)
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0:
        raise SystemExit("nix-store --dump failed")
    return out.stdout.decode().split()[0]


def bench(label: str, path: Path, runs: int) -> None:
    tools: dict[str, Callable[[Path], str]] = {"tdx hash_path": tdx_hash, "tdx hash_and_scan": tdx_scan}
    if shutil.which("nix-hash") and shutil.which("nix-store"):
        tools["nix-hash --type sha256"] = nix_hash
        tools["nix-store --dump | sha256sum"] = nix_dump_sha256sum
    tdx_hash(path)  # warm the page cache
    results = {name: best(lambda fn=fn: fn(path), runs) for name, fn in tools.items()}  # type: ignore[misc]
    digests = {r[1] for r in results.values()}
    if len(digests) != 1:
        raise SystemExit(f"{label}: tools disagree: {results}")
    base = results["tdx hash_path"][0]
    print(f"\n{label}  (sha256 {digests.pop()[:16]}…, best of {runs})")
    print(f"  {'tool':32} {'seconds':>8} {'tdx/tool':>9}")
    for name, (secs, _) in results.items():
        print(f"  {name:32} {secs:8.3f} {base / secs:9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to create the test data")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small-only", action="store_true", help="skip the 1 GiB file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nar-", dir=args.dir) as tmp:
        work = Path(tmp)
        if not args.small_only:
            make_big(work / "big")
            bench("(a) one 1 GiB file", work / "big", args.runs)
            (work / "big").unlink()
        make_small(work / "small")
        bench("(b) 50,000 small files in 250 directories", work / "small", args.runs)


if __name__ == "__main__":
    main()

"""Benchmark: `tdx measure` of a UKI on a GPT disk vs one `sha384sum` pass over the UKI and the disk.

Usage: .venv/bin/python benchmarks/bench_measure.py [UKI DISK]  (default: builds the test UKI and disk from the pinned
Debian packages in tests/measure_assets.py). Prints wall-clock seconds (best of 5) and the ratio; goal < 3x.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import measure_assets


def best_of(argv: list[str], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        if len(sys.argv) == 3:
            uki, disk = Path(sys.argv[1]), Path(sys.argv[2])
        else:
            uki = measure_assets.build_uki(Path(tmp) / "uki.efi", b"x" * (2 << 20), "console=ttyS0")
            disk = measure_assets.build_disk(Path(tmp) / "disk.img", uki)
        firmware = measure_assets.trixie_ovmf()
        size = uki.stat().st_size + disk.stat().st_size
        measure = best_of([sys.executable, "-m", "tdxstore.cli.app", "measure", str(disk), "--firmware",
                           str(firmware), "--partial", "--json"])
        sha = best_of(["sha384sum", str(uki), str(disk)])
        print(f"bytes (UKI + disk): {size / 2**20:.1f} MiB")
        print(f"tdx measure:        {measure:.3f} s")
        print(f"sha384sum:          {sha:.3f} s")
        print(f"ratio:              {measure / sha:.2f}x (goal < 3x)")


if __name__ == "__main__":
    main()

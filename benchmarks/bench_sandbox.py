"""Cost of the sandbox: a bare `bwrap ... true` vs the full tdx bwrap argv vs `run_sandboxed`.

Builds a busybox root in a temporary directory, runs each variant N times and prints the median
and 90th percentile in milliseconds. Usage: .venv/bin/python benchmarks/bench_sandbox.py [N]
"""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap.busybox import make_busybox_root
from tdxstore.sandbox import Mount, SandboxSpec, bwrap_argv, check_bwrap, etc_files, run_sandboxed


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm caches
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(label: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    p90 = sorted(samples)[int(len(samples) * 0.9) - 1]
    print(f"{label:<44} median {median:6.2f} ms   p90 {p90:6.2f} ms")
    return median


def main(n: int) -> None:
    bwrap = check_bwrap()
    with tempfile.TemporaryDirectory(prefix="tdx-bench-") as tmp:
        base = Path(tmp)
        root = make_busybox_root(base / "root")
        for d in ("build", "out", "etc", "input"):
            (base / d).mkdir()
        spec = SandboxSpec(
            argv=("/bin/true",), root=root,
            mounts=(Mount(base / "input", "/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-input"),
                    Mount(base / "build", "/build", writable=True),
                    Mount(base / "out", "/tdx/store/ixq2aqbd0fh3vc1vqfvz8l7p6d9fsm8f-out", writable=True)),
            env={"out": "/tdx/store/ixq2aqbd0fh3vc1vqfvz8l7p6d9fsm8f-out"}, timeout=60, max_silent=30,
        )
        for name, text in etc_files(spec).items():
            (base / "etc" / name).write_text(text)
        bare = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", str(root), "/", "--proc", "/proc",
                "--dev", "/dev", "/bin/true"]
        full = bwrap_argv(spec, base / "etc", bwrap=bwrap)
        t_bare = report("bare bwrap --unshare-all ... true", timed(lambda: subprocess.run(bare), n))
        t_full = report("tdx bwrap argv (subprocess.run)", timed(lambda: subprocess.run(full), n))
        sandboxed = timed(lambda: run_sandboxed(spec, io.BytesIO()), n)
        t_run = report("run_sandboxed(spec) with timeouts", sandboxed)
        print(f"options cost {t_full - t_bare:+.2f} ms; run_sandboxed supervision cost "
              f"{t_run - t_full:+.2f} ms; total over bare bwrap {t_run - t_bare:+.2f} ms")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)

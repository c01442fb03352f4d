"""`tdx lock` and the lock step of `tdx build`: a first resolution by pip against an index on 127.0.0.1,
a no-op relock, a `--update` of one module, and `tdx build --frozen --emit-mkosi` from the lock.

Plain script (no pytest): builds its own wheels, serves them, runs the real CLI as subprocesses and
prints a table of wall-clock medians with ratios against the first resolution (measured in the same run).
Run: .venv/bin/python benchmarks/bench_lock.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.wheelindex import SimpleIndex, make_wheel  # noqa: E402

TDXFILE = "from tdx import Image\nimport tdx_a\nimage = Image('b', base='debian/bookworm')\n"


def run(home: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "TDX_INDEX_URL"}
    env["TDX_HOME"] = str(home)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="tdx-bench-lock-") as tmp_s:
        tmp = Path(tmp_s)
        for name in ("tdx-a", "tdx-b", "tdx-c"):
            for version in ("1.0.0", "1.1.0"):
                pkg = name.replace("-", "_")
                make_wheel(tmp / "wheels", name, version, {f"{pkg}/__init__.py": f"V = {version!r}\n"},
                           requires=("tdx-vm-sdk",))
        index = SimpleIndex(tmp / "wheels")
        times: dict[str, list[float]] = {}
        try:
            for i in range(rounds):
                proj, home = tmp / f"p{i}", tmp / f"h{i}"
                proj.mkdir()
                (proj / "TDXfile").write_text(TDXFILE)
                (proj / "pyproject.toml").write_text(
                    '[project]\nname = "b"\nversion = "1"\n'
                    'dependencies = ["tdx-vm-sdk", "tdx-a>=1", "tdx-b~=1.0", "tdx-c<2"]\n'
                    f'[tool.tdx]\nindex-url = "{index.url}"\n')
                p = str(proj)
                times.setdefault("first tdx lock (pip resolves 3 modules)", []).append(run(home, "lock", "-p", p))
                times.setdefault("tdx lock, nothing changed (no pip)", []).append(run(home, "lock", "-p", p))
                times.setdefault("tdx lock --update tdx-b (pip)", []).append(
                    run(home, "lock", "--update", "tdx-b", "-p", p))
                times.setdefault("tdx build --frozen --emit-mkosi", []).append(
                    run(home, "build", p, "--frozen", "--emit-mkosi", str(tmp / f"o{i}")))
                times.setdefault("tdx --help (process start, baseline floor)", []).append(run(home, "--help"))
        finally:
            index.stop()
    base = statistics.median(next(iter(times.values())))
    print(f"{'step':48} {'median s':>9} {'ratio':>7}   ({rounds} rounds)")
    for step, values in times.items():
        med = statistics.median(values)
        print(f"{step:48} {med:9.2f} {med / base:7.2f}")


if __name__ == "__main__":
    main()

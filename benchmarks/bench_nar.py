"""Benchmark NAR hashing against Nix (one 1 GiB file, 50,000 small files) and a fetch against curl.

Plain script, not a test: `.venv/bin/python benchmarks/bench_nar.py [--dir /var/tmp] [--runs 3] [--small-only]
[--fetch-only]`. Each figure is the best of --runs warm-cache runs, all measured in the same process
run, so the ratios compare like with like on this machine. The fetch is `tdx fetch URL --sha256`
(a fixed-output fetch into an empty store) of a 200 MB file that `python -m http.server` serves on
127.0.0.1, against `curl URL | sha256sum` of the same URL; wall and CPU time of the clients.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore._fs import remove_tree
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


def _client_times(start: Callable[[], list[subprocess.Popen[bytes]]]) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds (user + system of the started processes) and the last one's stdout."""
    before = os.times()
    t = time.perf_counter()
    procs = start()
    out, _ = procs[-1].communicate()
    for p in procs:
        p.wait()
        if p.returncode:
            raise SystemExit(f"{p.args!r} failed with exit status {p.returncode}")
    wall = time.perf_counter() - t
    after = os.times()
    return wall, after.children_user - before.children_user + after.children_system - before.children_system, out


def bench_fetch(work: Path, runs: int, size: int = 200 * 1000 * 1000) -> None:
    served = work / "served"
    served.mkdir()
    block = os.urandom(MiB)
    h = hashlib.sha256()
    with open(served / "blob.bin", "wb") as f:
        for i in range(0, size, MiB):
            chunk = block[: min(MiB, size - i)]
            f.write(chunk)
            h.update(chunk)
    digest = h.hexdigest()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                               str(served), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/blob.bin"
    tdx_bin = str(Path(sys.executable).with_name("tdx"))
    try:
        for _ in range(100):  # until the server listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)

        def curl() -> list[subprocess.Popen[bytes]]:
            c = subprocess.Popen(["curl", "-sS", "--fail", url], stdout=subprocess.PIPE)
            assert c.stdout is not None
            s = subprocess.Popen(["sha256sum"], stdin=c.stdout, stdout=subprocess.PIPE)
            c.stdout.close()
            return [c, s]

        def tdx_fetch(home: Path) -> Callable[[], list[subprocess.Popen[bytes]]]:
            env = {**os.environ, "TDX_HOME": str(home)}
            return lambda: [subprocess.Popen([tdx_bin, "fetch", url, "--sha256", digest], env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)]

        results: dict[str, list[tuple[float, float]]] = {"curl | sha256sum": [], "tdx fetch --sha256": []}
        for i in range(runs):  # interleaved, so both meet the same load
            wall, cpu, out = _client_times(curl)
            if out.split()[0].decode() != digest:
                raise SystemExit(f"curl | sha256sum: wrong digest {out!r}")
            results["curl | sha256sum"].append((wall, cpu))
            home = work / f"fetch-home-{i}"
            wall, cpu, out = _client_times(tdx_fetch(home))
            results["tdx fetch --sha256"].append((wall, cpu))
            remove_tree(home)
    finally:
        server.terminate()
        server.wait()
        remove_tree(served)
    base_w, base_c = (min(r[k] for r in results["curl | sha256sum"]) for k in (0, 1))
    print(f"\nfixed-output fetch of {size / 1e6:.0f} MB over 127.0.0.1  "
          f"(best of {runs}; ratio against curl | sha256sum)")
    print(f"  {'client':32} {'wall s':>9} {'ratio':>9} {'cpu s':>9} {'ratio':>9}")
    for name, rs in results.items():
        w, c = (min(r[k] for r in rs) for k in (0, 1))
        print(f"  {name:32} {w:9.3f} {w / base_w:8.2f}x {c:9.3f} {c / base_c:8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to create the test data")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small-only", action="store_true", help="skip the 1 GiB file")
    ap.add_argument("--fetch-only", action="store_true", help="only the fetch against curl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nar-", dir=args.dir) as tmp:
        work = Path(tmp)
        bench_fetch(work, args.runs)
        if args.fetch_only:
            return
        if not args.small_only:
            make_big(work / "big")
            bench("(a) one 1 GiB file", work / "big", args.runs)
            (work / "big").unlink()
        make_small(work / "small")
        bench("(b) 50,000 small files in 250 directories", work / "small", args.runs)


if __name__ == "__main__":
    main()

"""Benchmark bundle export and import of a 1 GiB closure against `tar -c | zstd -3` and `zstd -d | tar -x`.

Plain script, not a test: `.venv/bin/python benchmarks/bench_transfer.py [--dir /var/tmp] [--mib 1024] [--runs 2]
[--export-only]` (the default prints both rows).
Everything is measured in this one process run (best of --runs, warm page cache): the closure is 8
store paths of equal size, half of each pseudo-random (incompressible) and half text (compressible),
in files of 4 MiB and 4 KiB. Export: `tdx store export` of the closure to a file vs `tar -c DIRS |
zstd -3 -o FILE`; import: `tdx store import FILE` into an empty store vs `zstd -d FILE | tar -x` into an
empty directory. tdx does more (hashes every NAR on both sides, checks the header, registers in SQLite);
ratios are tdx / baseline (below 1.0: tdx is faster). Besides wall time, the CPU time (user + system)
of the child processes is measured from getrusage: on a loaded machine it moves far less than wall time,
so its ratio says more about tdx's own cost. Every temporary file is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore._fs import remove_tree
from tdxstore.store.store import Store

MiB = 1 << 20
TDX = [sys.executable, "-m", "tdxstore.cli.app"]


def make_tree(root: Path, size: int, seed: int) -> None:
    root.mkdir(parents=True)
    text = b"".join(f"line {i} of a configuration or a log: key{i % 97} = value{i * 31 % 1009}\n".encode()
                    for i in range(60000))
    rnd = os.urandom(4 * MiB)
    half, done, i = size // 2, 0, 0
    while done < half:  # big random files
        (root / f"blob{i}.bin").write_bytes(rnd[seed:] + rnd[:seed])
        done += 4 * MiB
        i += 1
    (root / "small").mkdir()
    done, i = 0, 0
    while done < half:  # many small text files
        chunk = text[(i * 4096) % (len(text) - 4096):][:4096]
        (root / "small" / f"f{i}.txt").write_bytes(chunk)
        done += 4096
        i += 1


def cpu() -> float:
    """User + system seconds of every finished child process so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], env: dict[str, str], cpus: list[float], **kw: object) -> float:
    start, c0 = time.perf_counter(), cpu()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    cpus.append(cpu() - c0)
    return time.perf_counter() - start


def tar_zstd(root: Path, dirs: list[str], out: Path) -> None:
    """The export baseline: `tar -C ROOT -c DIRS | zstd -3 -o OUT`."""
    tarp = subprocess.Popen(["tar", "-C", str(root), "-c", *dirs], stdout=subprocess.PIPE)
    subprocess.run(["zstd", "-3", "-q", "-o", str(out)], stdin=tarp.stdout, check=True)
    assert tarp.wait() == 0


def unzstd_tar(archive: Path, dest: Path) -> None:
    """The import baseline: `zstd -d -c ARCHIVE | tar -C DEST -x`, DEST made here (it must not exist)."""
    dest.mkdir()
    z = subprocess.Popen(["zstd", "-d", "-q", "-c", str(archive)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(dest), "-x"], stdin=z.stdout, check=True)
    assert z.wait() == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--export-only", action="store_true", help="skip the import row")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-", dir=args.dir))
    try:
        src = work / "src"
        store = Store.open(work / "a")
        paths = []
        for n in range(8):
            make_tree(src / f"p{n}", args.mib * MiB // 8, n)
            paths.append(store.add_path(src / f"p{n}", f"part{n}"))
        store.close()
        env = {**os.environ, "TDX_HOME": str(work / "a")}
        dirs = [str(store.real_path(p).relative_to(work / "a" / "store")) for p in paths]
        rows = []
        exp, tar, imp, untar = [], [], [], []
        c_exp: list[float] = []
        c_tar: list[float] = []
        c_imp: list[float] = []
        c_untar: list[float] = []
        for _ in range(args.runs):
            (work / "b.tdx").unlink(missing_ok=True)
            exp.append(timed([*TDX, "store", "export", *(p.logical for p in paths), "-o", str(work / "b.tdx")], env,
                             c_exp))
            (work / "b.tar.zst").unlink(missing_ok=True)
            t0, c0 = time.perf_counter(), cpu()
            tar_zstd(work / "a" / "store", dirs, work / "b.tar.zst")
            tar.append(time.perf_counter() - t0)
            c_tar.append(cpu() - c0)
            if args.export_only:
                continue
            remove_tree(work / "b")
            env_b = {**os.environ, "TDX_HOME": str(work / "b")}
            imp.append(timed([*TDX, "store", "import", str(work / "b.tdx")], env_b, c_imp))
            remove_tree(work / "x")
            t0, c0 = time.perf_counter(), cpu()
            unzstd_tar(work / "b.tar.zst", work / "x")
            untar.append(time.perf_counter() - t0)
            c_untar.append(cpu() - c0)
        gib = args.mib / 1024
        rows.append(("export", min(exp), min(tar), min(c_exp), min(c_tar), (work / "b.tdx").stat().st_size,
                     (work / "b.tar.zst").stat().st_size))
        if not args.export_only:
            rows.append(("import", min(imp), min(untar), min(c_imp), min(c_untar), 0, 0))
        print(f"closure: {len(paths)} paths, {args.mib} MiB; best of {args.runs}; load average "
              f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        print(f"{'step':8} {'tdx s':>8} {'tdx MiB/s':>10} {'tar+zstd s':>11} {'ratio':>7} {'tdx cpu s':>10} "
              f"{'base cpu s':>11} {'cpu ratio':>10}  sizes")
        for name, t, base, ct, cb, size, base_size in rows:
            sizes = f"bundle {size / MiB:.0f} MiB, tar.zst {base_size / MiB:.0f} MiB" if size else ""
            print(f"{name:8} {t:8.2f} {gib * 1024 / t:10.0f} {base:11.2f} {t / base:7.2f} {ct:10.2f} {cb:11.2f} "
                  f"{ct / cb:10.2f}  {sizes}")
    finally:
        remove_tree(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

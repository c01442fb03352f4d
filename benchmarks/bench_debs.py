"""Locked .deb files: verify + resolve, then fetch mkosi's closure into empty stores, in one run.

Resolves `?essential base-files systemd udev dbus ca-certificates curl` (FINDINGS.md's set) from
bookworm on deb.debian.org, then downloads the same files: first plainly, one after another, into a
directory (the baseline: network cost only), then with `realise_debs` into an empty store with 1 and
4 jobs, then a no-op (every file valid) and a set with one more package. Network-bound: run it twice.
Usage: .venv/bin/python benchmarks/bench_debs.py [mirror]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore.fetch.download import download
from tdxstore.packages import Mirrors, PackageSet, fetch_suite, realise_debs, resolve
from tdxstore.packages.debs import deb_url
from tdxstore.store.store import Store

PACKAGES = ["systemd", "udev", "dbus", "ca-certificates", "curl"]


def fetched(store: Store, pkgs: PackageSet, mirrors: Mirrors) -> int:
    """How many files `realise_debs` had to download."""
    counts: list[int] = []
    realise_debs(store, pkgs, mirrors, progress=lambda d, _t: counts.append(d))
    return counts[-1] - counts[0]


def main(mirror: str) -> None:
    mirrors = Mirrors({"debian": mirror})
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp)
        s0 = Store.open(base / "s0")
        t = time.perf_counter()
        idx = fetch_suite(s0, mirror, "bookworm")
        rows.append(("fetch + verify bookworm InRelease and Packages.xz", time.perf_counter() - t, ""))
        t = time.perf_counter()
        pkgs = resolve(s0, [idx], PACKAGES)
        rows.append(("resolve with apt (private config, verified indexes)", time.perf_counter() - t,
                     f"{len(pkgs.packages)} packages, {pkgs.total_size / 1e6:.1f} MB"))
        t = time.perf_counter()
        for p in pkgs.packages:
            download(deb_url(p, pkgs, mirrors), base / "plain" / p.file_name, expected_sha256=p.sha256)
        plain = time.perf_counter() - t
        for jobs in (1, 4):
            s = Store.open(base / f"s{jobs}")
            t = time.perf_counter()
            realise_debs(s, pkgs, mirrors, jobs=jobs)
            rows.append((f"realise_debs into an empty store, jobs={jobs}", time.perf_counter() - t, ""))
            if jobs == 4:
                t = time.perf_counter()
                realise_debs(s, pkgs, mirrors, jobs=jobs)
                rows.append(("realise_debs, every file valid (no-op)", time.perf_counter() - t, ""))
                more = resolve(s0, [idx], [*PACKAGES, "hello"])
                t = time.perf_counter()
                n = fetched(s, more, mirrors)
                rows.append(("one package added (hello): files fetched", time.perf_counter() - t,
                             f"{n} of {len(more.packages)} downloaded"))
            s.close()
        s0.close()
    print(f"{'measure':<56}{'seconds':>9}{'ratio':>8}  note")
    print(f"{'plain sequential download of the same files (baseline)':<56}{plain:>9.2f}{1.0:>8.2f}")
    for name, sec, note in rows:
        print(f"{name:<56}{sec:>9.2f}{sec / plain:>8.2f}  {note}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://deb.debian.org/debian")

"""Helpers of the `tdx build` end-to-end tests and benchmark: run the CLI, read and diff image outputs.

The CLI always runs in a subprocess (`sys.executable -m tdxstore.cli.app`) with its own TDX_HOME, as a user
would run it; nothing here reaches into the pipeline's internals. Diffs are for reporting: they list
what differs (tar members, PE sections), they never decide what counts as "equal enough".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "examples" / "minimal"


@dataclass(frozen=True, slots=True)
class Run:
    """One finished `tdx …` subprocess."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def __str__(self) -> str:
        return f"tdx {' '.join(self.argv)} -> {self.rc} in {self.seconds:.1f} s\n{self.stdout}\n{self.stderr}"


def tdx(home: Path, *args: str | Path, timeout: float = 1800, cwd: Path = REPO) -> Run:
    """Run `tdx ARGS` with TDX_HOME=home; never raises on a non-zero exit."""
    env = {**os.environ, "TDX_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("TDX_DEBUG", None)
    argv = tuple(str(a) for a in args)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return Run(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def build(home: Path, tdxfile: Path, out: Path, fmt: str, name: str = "minimal") -> tuple[Run, Path]:
    """`tdx build TDXFILE -o OUT --format FMT`; returns the run and the image's store directory."""
    run = tdx(home, "build", tdxfile, "-o", out, "--format", fmt)
    assert run.rc == 0, str(run)
    return run, (out / name).resolve()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Member:
    """What a tar member is made of, for comparison."""

    kind: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    link: str
    digest: str
    xattrs: tuple[tuple[str, str], ...]


def tar_members(path: Path) -> dict[str, Member]:
    """Every member of a tar archive by normalised name (no leading './')."""
    out: dict[str, Member] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            digest = ""
            if m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
            xattrs = tuple(sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr")))
            out[m.name.removeprefix("./").rstrip("/")] = Member(
                m.type, m.mode, m.uid, m.gid, int(m.mtime), m.linkname, digest, xattrs)
    return out


def diff_tars(a: Path, b: Path, limit: int = 40) -> list[str]:
    """Human-readable differences between two tar archives: missing members and differing fields."""
    ma, mb = tar_members(a), tar_members(b)
    lines = [f"only in first: {n}" for n in sorted(ma.keys() - mb.keys())]
    lines += [f"only in second: {n}" for n in sorted(mb.keys() - ma.keys())]
    order_a = [n for n in ma if n in mb]
    order_b = [n for n in mb if n in ma]
    if order_a != order_b:
        lines.append("member order differs")
    for name in sorted(ma.keys() & mb.keys()):
        x, y = ma[name], mb[name]
        if x != y:
            fields = [f for f in Member.__slots__ if getattr(x, f) != getattr(y, f)]
            lines.append(f"differs: {name} ({', '.join(fields)})")
    if not lines:
        lines.append("members identical: the difference is in the tar headers or padding")
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


def diff_pe(a: Path, b: Path) -> list[str]:
    """Which PE sections of two UKIs differ (by SHA-256 of their raw data)."""
    import pefile

    def sections(p: Path) -> dict[str, str]:
        pe = pefile.PE(str(p), fast_load=True)
        return {s.Name.rstrip(b"\0").decode(): hashlib.sha256(s.get_data()).hexdigest() for s in pe.sections}

    sa, sb = sections(a), sections(b)
    lines = [f"section {n}: {'differs' if sa.get(n) != sb.get(n) else 'same'}" for n in sorted(sa.keys() | sb.keys())]
    return lines

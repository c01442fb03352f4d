"""`tdx fetch`: print the hash to declare for a URL, file or git ref, or pre-populate the store (L5).

Parses options, calls one function of `tdxstore.builders.fetch`, prints the result on stdout.
A progress bar goes to stderr only when stderr is a terminal; errors are raised, never printed here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

from tdxstore.errors import UsageError

if TYPE_CHECKING:
    from tdxstore.fetch.download import Limits

ProgressFn = Callable[[int, int | None], None]


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_cmd)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[ProgressFn | None]:
    """A rich download bar (size, speed, ETA) on a terminal; None (silent) otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _label(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail if len(tail) <= 40 else tail[:37] + "…"


def fetch_cmd(
    source: str = typer.Argument(..., metavar="URL|FILE",
                                 help="URL (https, http, file) or local file; with --hash also a directory."),
    hash_only: bool = typer.Option(False, "--hash", help="Print the sha256:<hex> to declare for SOURCE."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected hash: download, verify, store."),
    git: bool = typer.Option(False, "--git", help="SOURCE is a git repository (needs --tag or --rev)."),
    tag: str | None = typer.Option(None, "--tag", help="Git tag to fetch (with --git)."),
    rev: str | None = typer.Option(None, "--rev", help="Full git commit id to fetch (with --git)."),
    submodules: bool = typer.Option(False, "--submodules", help="Also check out git submodules."),
    name: str | None = typer.Option(None, "--name", "-n", help="Store path name (default: from the URL)."),
    max_size: str | None = typer.Option(None, "--max-size", metavar="SIZE",
                                        help="Largest download when the server declares no length "
                                             "(bytes, or with K/M/G/T; default 4G)."),
    deadline: float | None = typer.Option(None, "--deadline", metavar="SECONDS", min=0.001,
                                          help="Longest time for the whole download, retries included "
                                               "(default 21600 = 6 h)."),
) -> None:
    """Compute the hash of a URL, file or git ref, or download and verify it into the store.

    \b
    tdx fetch --hash https://go.dev/dl/go1.22.5.linux-amd64.tar.gz
    tdx fetch --hash ./go1.22.5.linux-amd64.tar.gz
    tdx fetch https://go.dev/dl/go1.22.5.linux-amd64.tar.gz --sha256 904b924d…
    tdx fetch ./go1.22.5.linux-amd64.tar.gz --sha256 904b924d…
    tdx fetch --hash --git https://github.com/golang/go --tag go1.22.5
    """
    if hash_only and sha256 is not None:
        raise UsageError("--hash and --sha256 exclude each other",
                         hint="use --hash to learn the hash, --sha256 to download and verify", code="usage")
    if not git and (tag is not None or rev is not None or submodules):
        raise UsageError("--tag, --rev and --submodules need --git",
                         hint=f"tdx fetch --hash --git {source} --tag TAG", code="usage")
    if git:
        _fetch_git(source, hash_only, sha256, tag, rev, submodules, name)
    else:
        _fetch_url(source, hash_only, sha256, name, _limits(max_size, deadline))


def _limits(max_size: str | None, deadline: float | None) -> Limits:
    from tdxstore.fetch.download import DEFAULT_LIMITS, Limits

    return Limits(max_size=DEFAULT_LIMITS.max_size if max_size is None else parse_size(max_size),
                  deadline=DEFAULT_LIMITS.deadline if deadline is None else deadline)


def parse_size(text: str) -> int:
    """`4G`, `512M`, `100K`, `1T` (powers of 1024) or plain bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = text.strip().upper().removesuffix("IB").removesuffix("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"--max-size {text!r} is not a size", hint="write bytes or a number with K, M, G or T "
                         "(for example 8G)", code="usage")
    return int(number) * units[unit]


def _fetch_url(source: str, hash_only: bool, sha256: str | None, name: str | None, limits: Limits) -> None:
    from tdxstore.builders import fetch as fetch_mod
    from tdxstore.cli.app import open_store

    if hash_only:
        if "://" in source and not source.startswith("file://"):
            with _progress(_label(source)) as progress:
                print(fetch_mod.hash_of(source, progress=progress, limits=limits))
        else:
            print(fetch_mod.hash_of(source, limits=limits))
        return
    if sha256 is None:
        from tdxstore.fetch.hashspec import missing_hash_error

        raise missing_hash_error(source)
    store = open_store()
    try:
        with _progress(_label(source)) as progress:
            path = fetch_mod.fetch(source, sha256, name=name, store=store, progress=progress, limits=limits)
        print(store.parse(path).logical)
    finally:
        store.close()


def _fetch_git(source: str, hash_only: bool, sha256: str | None, tag: str | None, rev: str | None,
               submodules: bool, name: str | None) -> None:
    from tdxstore.builders import fetch as fetch_mod
    from tdxstore.cli.app import open_store
    from tdxstore.fetch.git import check_git_url, check_ref

    check_git_url(source)
    check_ref(tag, rev)
    if hash_only:
        digest, commit = fetch_mod.hash_of_git(source, tag=tag, rev=rev, submodules=submodules, name=name)
        print(digest)
        print(f"resolved {tag or rev} to commit {commit}", file=sys.stderr)
        return
    if sha256 is None:
        from tdxstore.fetch.hashspec import missing_hash_error

        raise missing_hash_error(source, git=True)
    store = open_store()
    try:
        path = fetch_mod.fetch_git(source, tag=tag, rev=rev, sha256=sha256, submodules=submodules,
                                   name=name, store=store)
        print(store.parse(path).logical)
    finally:
        store.close()

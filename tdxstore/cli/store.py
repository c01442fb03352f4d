"""`tdx store …`: add, ls, path-info, dump, verify, gc, delete, roots (L5: parse, call, print).

Export, import and signing are in `cli/transfer.py`, registered on the same group (keys and caches:
`cli/cache.py`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tdxstore.store.store import Store

store_app = typer.Typer(help="Inspect and maintain the content-addressed store.", no_args_is_help=True,
                        rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    from tdxstore.cli import transfer

    transfer.register(store_app)
    app.add_typer(store_app, name="store")


def _open() -> Store:
    from tdxstore.cli.app import open_store

    return open_store()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


@store_app.command("add")
def add(
    path: Path = typer.Argument(..., help="File or directory to add."),
    name: str | None = typer.Option(None, "--name", "-n", help="Store path name (default: the file name)."),
    flat: bool = typer.Option(False, "--flat", help="Hash the file's bytes, not its NAR (single files)."),
) -> None:
    """Put a file or a directory tree into the store and print its store path."""
    store = _open()
    sp = store.add_flat(path, name) if flat else store.add_path(path, name)
    print(sp)


@store_app.command("ls")
def ls() -> None:
    """List every valid store path."""
    store = _open()
    from tdxstore.store.path import StorePath

    for base in store.db.all_paths():
        print(StorePath.from_base_name(base).logical)


@store_app.command("path-info")
def path_info(
    paths: list[str] = typer.Argument(..., help="Store paths (logical /tdx/store/… or physical)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show NAR hash, NAR size, references, deriver and registration time of store paths."""
    from tdxstore.cli.check import check_json, check_lines

    store = _open()
    infos = [store.query(store.parse(p)) for p in paths]
    if as_json:
        import json

        print(json.dumps([{
            "path": str(i.path), "narHash": i.nar_hash, "narSize": i.nar_size,
            "references": [str(r) for r in i.references], "deriver": str(i.deriver) if i.deriver else None,
            "ca": i.ca, "registrationTime": i.registration_time, "impure": i.impure,
            "check": check_json(store, i.path),
            "signatures": store.db.signatures(i.path.base_name),
        } for i in infos], indent=2))
        return
    for i in infos:
        print(i.path)
        print(f"  nar-hash:      {i.nar_hash}")
        print(f"  nar-size:      {i.nar_size}")
        print(f"  registered:    {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(i.registration_time))}")
        print(f"  deriver:       {i.deriver or '-'}")
        print(f"  content-addr:  {i.ca or '-'}")
        if i.impure:
            print("  impure:        yes (built without sandbox)")
        sigs = store.db.signatures(i.path.base_name)
        print(f"  signatures:    {len(sigs)}")
        for sig in sigs:
            print(f"    {sig}")
        print(f"  references:    {len(i.references)}")
        for r in i.references:
            print(f"    {r}")
        for line in check_lines(store, i.path):
            print(line)


@store_app.command("dump")
def dump(path: str = typer.Argument(..., help="Store path to serialise.")) -> None:
    """Write the NAR serialisation of a store path to standard output."""
    from tdxstore.store.nar import dump as nar_dump

    store = _open()
    sp = store.parse(path)
    store.query(sp)
    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)

    nar_dump(store.real_path(sp), write)
    out.flush()


@store_app.command("verify")
def verify(
    repair_db: bool = typer.Option(False, "--repair-db",
                                   help="Rebuild an unreadable database from the store, or drop rows of "
                                        "missing paths (and their referrers)."),
    no_contents: bool = typer.Option(False, "--no-contents", help="Only check that paths exist."),
) -> None:
    """Re-hash every valid path and report missing or corrupted ones."""
    from tdxstore.errors import StoreError
    from tdxstore.store.gc import stale_temporaries
    from tdxstore.store.verify import drop_missing, repair_database, verify_store

    try:
        store = _open()
    except StoreError as e:
        if e.code not in ("db-corrupt", "db-missing") or not repair_db:
            raise
        rebuilt = repair_database()
        print(f"database rebuilt from the store: {len(rebuilt)} paths registered", file=sys.stderr)
        store = _open()
    report = verify_store(store, check_contents=not no_contents)
    for m in report.missing:
        print(f"missing:   {m}")
    for sp, exp, got in report.corrupted:
        print(f"corrupted: {sp}\n  expected {exp}\n  got      {got}")
    for g in report.garbage:
        print(f"invalid (unregistered, removed by gc): {g}")
    for entry, size in stale_temporaries(store):
        print(f"leftover of a killed process (removed by gc): {entry} ({_human(size)})")
    if repair_db and report.missing:
        for b in drop_missing(store, list(report.missing)):
            print(f"invalidated: /tdx/store/{b}")
    print(f"checked {report.checked} paths: {len(report.missing)} missing, {len(report.corrupted)} corrupted",
          file=sys.stderr)
    if report.corrupted or (report.missing and not repair_db):
        raise typer.Exit(1)


@store_app.command("gc")
def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted.")) -> None:
    """Delete every path not reachable from a GC root."""
    from tdxstore.store.gc import collect_garbage

    report = collect_garbage(_open(), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for p in report.deleted:
        print(f"{verb} {p}")
    for g in report.garbage:
        print(f"{verb} invalid {g}")
    print(f"{verb} {len(report.deleted) + len(report.garbage)} paths, "
          f"{'would free' if dry_run else 'freed'} {_human(report.freed_bytes)}", file=sys.stderr)


@store_app.command("delete")
def delete(paths: list[str] = typer.Argument(..., help="Store paths to delete.")) -> None:
    """Delete store paths (refused while referenced or rooted)."""
    from tdxstore.store.gc import delete_paths

    store = _open()
    freed = delete_paths(store, [store.parse(p) for p in paths])
    print(f"deleted {len(paths)} paths, freed {_human(freed)}", file=sys.stderr)


@store_app.command("roots")
def roots_cmd() -> None:
    """List GC roots and the store paths they keep alive."""
    from tdxstore.store.gc import roots

    for link, sp in sorted(roots(_open()).items()):
        print(f"{link} -> {sp}")

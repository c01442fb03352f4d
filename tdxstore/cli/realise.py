"""`tdx realise`, `tdx log`, `tdx show-derivation`, `tdx why-depends` (L4)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tdxstore.store.realise import Options
    from tdxstore.store.store import Store


def register(app: typer.Typer) -> None:
    app.command("realise")(realise_cmd)
    app.command("log")(log_cmd)
    app.command("show-derivation")(show_derivation_cmd)
    app.command("why-depends")(why_depends_cmd)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def realise_cmd(
    target: str = typer.Argument(..., help="FILE.py[:ATTR] or a .drv store path (optionally ^OUTPUT)."),
    out_link: Path | None = typer.Option(None, "--out-link", "-o", help="Make a result link (a GC root)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be built."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Independent derivations built in parallel."),
    keep_failed: bool = typer.Option(False, "--keep-failed", help="Keep the build directory of a failure."),
    no_sandbox: bool = typer.Option(False, "--no-sandbox",
                                    help="DEVELOPERS ONLY: build on the host, outputs marked impure."),
    timeout: float | None = typer.Option(None, "--timeout", help="Default wall-clock limit (s)."),
    max_silent: float | None = typer.Option(None, "--max-silent", help="Default limit without output (s)."),
    offline: bool = typer.Option(False, "--offline", help="Download nothing; list what is missing up front."),
) -> None:
    """Build a derivation (and what it needs) and print its output paths."""
    from tdxstore.cli.app import open_store
    from tdxstore.cli.transfer import configure
    from tdxstore.store.realise import Options

    store = open_store()
    configure(store, offline)
    # One GC guard from evaluation to the result links: a gc waits until the outputs are rooted.
    with store.gc_guard():
        _realise(store, target, out_link, dry_run, Options(
            jobs=jobs, keep_failed=keep_failed, no_sandbox=no_sandbox, timeout=timeout, max_silent=max_silent,
            cores=max(1, (os.cpu_count() or 1) // jobs)))


def _realise(store: Store, target: str, out_link: Path | None, dry_run: bool, options: Options) -> None:
    from tdxstore.cli.builds import Lowering
    from tdxstore.store.evaluate import resolve_targets, selected_paths
    from tdxstore.store.gc import add_root
    from tdxstore.store.realise import instantiate, plan, realise

    drvs, output = resolve_targets(store, target, lambda directory, build: Lowering(store, directory)(build))
    if dry_run:
        for d in drvs:
            instantiate(store, d)
        todo = plan(store, drvs)
        _err(f"{len(todo.build)} derivations would be built, {len(todo.valid)} are already valid")
        for d in todo.build:
            print(f"build {d.drv_path}")
        for d in todo.valid:
            print(f"valid {d.drv_path}")
        return
    if options.no_sandbox:
        _err("WARNING: --no-sandbox: builders run on the host WITHOUT isolation; outputs are marked impure "
             "and must not be used for measured images.")

    def progress(event: str, drv: object, detail: str) -> None:
        name = getattr(drv, "name", "?")
        if event == "build":
            _err(f"building {name}…")
        elif event == "built":
            _err(f"built {name} ({detail})")
        elif event == "failed":
            _err(f"failed {name}")
        elif event == "substituted":
            _err(f"substituted {name}")

    result = realise(store, drvs, options, progress)
    if not result.built:
        _err("nothing to build: every output is already valid")
    paths = selected_paths(drvs, output)
    for i, p in enumerate(paths):
        if out_link is not None:
            link = out_link if i == 0 else out_link.with_name(f"{out_link.name}-{i}")
            add_root(store, link, p)
        print(p)


def log_cmd(path: str = typer.Argument(..., help="An output path or .drv path.")) -> None:
    """Print the build log of a path."""
    from tdxstore.cli.app import open_store
    from tdxstore.errors import StoreError
    from tdxstore.store.build import read_log

    store = open_store()
    sp = store.parse(path)
    drv = sp if sp.is_derivation else store.query(sp).deriver
    if drv is None or not store.log_path(drv).exists():
        raise StoreError(f"no build log is stored for {sp}",
                         hint="only paths built here have logs (added or fetched ones do not)", code="no-log")
    sys.stdout.buffer.write(read_log(store, drv))


def show_derivation_cmd(
    path: str = typer.Argument(..., help="A .drv path, an output path, or FILE.py[:ATTR]."),
) -> None:
    """Print a derivation as readable JSON."""
    from tdxstore.cli.app import open_store
    from tdxstore.store.drvcodec import to_json
    from tdxstore.store.evaluate import resolve_targets
    from tdxstore.store.path import split_logical
    from tdxstore.store.realise import load_derivation

    store = open_store()
    if split_logical(path) is not None and not path.endswith(".drv"):
        deriver = store.query(store.parse(path)).deriver
        if deriver is None:
            from tdxstore.errors import StoreError

            raise StoreError(f"{path} was not built by a derivation", code="no-deriver")
        drvs = [load_derivation(store, deriver)]
    else:
        drvs, _ = resolve_targets(store, path)
    out = [to_json(d) for d in drvs]
    print(json.dumps(out[0] if len(out) == 1 else out, indent=2, sort_keys=True))


def why_depends_cmd(
    package: str = typer.Argument(..., help="The path that depends."),
    dependency: str = typer.Argument(..., help="The path it (maybe) depends on."),
) -> None:
    """Show a chain of references from PACKAGE to DEPENDENCY, and where each reference occurs."""
    from tdxstore.cli.app import open_store
    from tdxstore.store.why import why_depends

    store = open_store()
    for line in why_depends(store, store.parse(package), store.parse(dependency)):
        print(line)

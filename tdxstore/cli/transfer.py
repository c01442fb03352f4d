"""`tdx store export|import|sign` (L5: parse, call one library function, print).

Registered on the `store` group by `cli/store.py`; keys and caches are `cli/cache.py`'s. Bundles are
`tdxstore/store/bundle.py`; a TDXfile target is evaluated here (the CLI composes `image/` with the
store), for `tdx store export` and `tdx cache push --closure` alike.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer

if TYPE_CHECKING:
    from tdxstore.store.bundle import Progress
    from tdxstore.store.derivation import Derivation
    from tdxstore.store.path import StorePath
    from tdxstore.store.signing import PublicKey
    from tdxstore.store.store import Store


def register(group: typer.Typer) -> None:
    if any(c.name == "export" for c in group.registered_commands):  # the group is module-level: once
        return
    group.command("export")(export_cmd)
    group.command("import")(import_cmd)
    group.command("sign")(sign_cmd)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Progress | None]:
    """A rich bar of bytes and paths on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("{task.fields[paths]}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None, paths="")

        def update(done: int, total: int, paths: int, count: int) -> None:
            bar.update(task, completed=done, total=total, paths=f"{paths}/{count} paths")

        yield update


def configure(store: Store, offline: bool) -> None:
    """What `tdx build` and `tdx realise` share: `--offline` and the configured substituters."""
    from tdxstore.fetch import offline as offline_run
    from tdxstore.store.cache import substituters_from
    from tdxstore.store.settings import load_settings

    offline_run.enable(offline)
    store.offline = offline
    store.substituters = substituters_from(load_settings(), offline=offline, notify=_say)


def targets_of(store: Store, targets: list[str]) -> tuple[list[StorePath], list[Derivation]]:
    """Store paths (a `.drv` means its derivation) and TDXfiles (evaluated to their image derivation)."""
    from tdxstore.store.path import STORE_DIR

    paths: list[StorePath] = []
    drvs: list[Derivation] = []
    for t in targets:
        if t.startswith(STORE_DIR + "/") or Path(t).absolute().parent == store.root or Path(t).is_symlink():
            paths.append(store.parse(t))
            continue
        drvs.append(_tdxfile_derivation(store, Path(t), paths))
    return paths, drvs


def _tdxfile_derivation(store: Store, tdxfile: Path, extra: list[StorePath]) -> Derivation:
    from tdxstore.cli.lock import prepare_build
    from tdxstore.image import pipeline

    locked = prepare_build(tdxfile)  # the locked modules, as store paths
    extra.extend(store.parse(p) for p in locked if Path(p).absolute().parent == store.root)
    plan = pipeline.image_derivation(store, pipeline.evaluate(tdxfile, None, store, import_paths=locked))
    assert plan.derivation is not None
    return plan.derivation


def export_cmd(
    targets: list[str] = typer.Argument(..., help="Store paths, .drv paths or TDXfiles (or their directories)."),
    output: str = typer.Option(..., "--output", "-o", help="The bundle to write ('-': standard output)."),
    outputs_only: bool = typer.Option(False, "--outputs-only", help="Only the outputs' closure of .drv and "
                                                                    "TDXfile targets, not what rebuilds them."),
) -> None:
    """Write the closure of TARGETs (for a TDXfile or .drv: everything needed to rebuild it) as a bundle."""
    from tdxstore.cli.app import open_store
    from tdxstore.errors import TransferError
    from tdxstore.store.bundle import export_bundle, select

    store = open_store()
    with store.gc_guard():
        paths, drvs = targets_of(store, targets)
        sel = select(store, paths, drvs, outputs_only=outputs_only)
        if outputs_only and sel.missing:
            raise TransferError(f"{len(sel.missing)} output(s) are not built in this store",
                                detail="\n".join(map(str, sel.missing)), code="export-not-built",
                                hint="build them first (tdx build / tdx realise), or export without --outputs-only")
        for m in sel.missing:
            _say(f"warning: not in this store, so not in the bundle (an offline build must make it): {m}")
        with _progress("exporting") as progress, _sink(output) as out:
            summary = export_bundle(store, sel.roots, out, progress=progress)
    _say(f"exported {summary.paths} paths ({_size(summary.nar_bytes)} of NAR) to {output}")


@contextlib.contextmanager
def _sink(output: str) -> Iterator[BinaryIO]:
    if output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    from tdxstore._fs import atomic_stream
    from tdxstore.errors import TransferError

    if Path(output).is_dir():  # found only by the rename, after the whole bundle was written
        raise TransferError(f"cannot write the bundle {output!r}: it is a directory",
                            hint="give -o a file name, for example bundle.tdx", code="export-output-unwritable")
    with contextlib.ExitStack() as stack:
        try:  # only creating the file: an error while writing is the export's own
            f = stack.enter_context(atomic_stream(Path(output)))  # synced as it grows: no long fsync at the end
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            raise TransferError(f"cannot write the bundle {output!r}: {e.strerror} ({e.filename!r})",
                                hint="give -o a file in an existing, writable directory",
                                code="export-output-unwritable") from e
        yield f


def _keys(keys: list[str]) -> list[PublicKey]:
    """Public keys given inline (`name:base64`) or as files holding one."""
    from tdxstore.store.signing import PublicKey

    out = []
    for k in keys:
        p = Path(k)
        out.append(PublicKey.parse(p.read_text(), repr(k)) if p.is_file() else PublicKey.parse(k, repr(k)))
    return out


def import_cmd(
    bundle: str = typer.Argument(..., help="The bundle to read ('-': standard input)."),
    require_signature: list[str] = typer.Option([], "--require-signature", metavar="KEY",
                                                help="Refuse paths not signed by KEY (name:base64 or a file); "
                                                     "repeatable. Default: the configured trusted keys, if any."),
    no_signatures: bool = typer.Option(False, "--no-check-signatures",
                                       help="Accept unsigned paths even when trusted keys are configured."),
) -> None:
    """Verify and add every path of a bundle (nothing is registered unless the whole bundle checks out)."""
    from tdxstore.cli.app import open_store
    from tdxstore.errors import TransferError
    from tdxstore.store.bundle import import_bundle
    from tdxstore.store.settings import load_settings

    trusted: list[PublicKey] | None = _keys(require_signature) or list(load_settings().trusted_keys) or None
    if no_signatures:
        trusted = None
    store = open_store()
    try:
        src = sys.stdin.buffer if bundle == "-" else open(bundle, "rb")  # noqa: SIM115
    except OSError as e:
        raise TransferError(f"cannot read the bundle {bundle!r}: {e.strerror}", code="bundle-unreadable") from e
    with src, _progress("importing") as progress:
        summary = import_bundle(store, src, trusted=trusted, progress=progress)
    for p in summary.added:
        print(p)
    checked = f", signatures checked against {len(trusted)} key(s)" if trusted else ", signatures not checked"
    _say(f"imported {len(summary.added)} paths, {summary.skipped} already valid ({_size(summary.nar_bytes)} "
         f"of NAR{checked})")


def sign_cmd(
    paths: list[str] = typer.Argument(..., help="Store paths to sign."),
    key: Path = typer.Option(..., "--key", "-k", help="The secret key file."),
    recursive: bool = typer.Option(False, "--closure", help="Sign the paths' whole closures."),
) -> None:
    """Sign store paths with a secret key; the signatures travel in bundles and caches."""
    from tdxstore.cli.app import open_store
    from tdxstore.errors import TransferError
    from tdxstore.store.signing import SecretKey
    from tdxstore.store.transfer import record_of

    try:
        text = key.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TransferError(f"cannot read the key file {str(key)!r}: {e}", code="key-invalid") from e
    secret = SecretKey.parse(text, repr(str(key)))
    store = open_store()
    sps = [store.parse(p) for p in paths]
    for sp in sps:
        store.query(sp)
    todo = sorted(store.closure(sps)) if recursive else sps
    with store.db.transaction() as conn:
        for sp in todo:
            store.db.add_signatures(conn, sp.base_name, [secret.sign(record_of(store, sp))])
    _say(f"signed {len(todo)} paths with {secret.name}")

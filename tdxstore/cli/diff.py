"""`tdx diff A B` (L5): what changed between two built images and which measurement it moves.

A and B are store paths, result links (`out/<name>`), image directories, TDXfiles (built first, or looked
up) or `REV:PATH`, a TDXfile at a git revision (exported by `git archive`, then built). Prints the
measurement summary, the causes and the artifact report (or JSON). Exits 0 when identical and 1 when
the images differ, as diff(1) does; bad input is one error (exit 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tdxstore.errors import DiffError


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_cmd)


def _is_tdxfile(path: Path) -> bool:
    return (path.is_dir() and (path / "TDXfile").is_file()) or (path.is_file() and path.name == "TDXfile")


def _build(path: Path, fmt: str | None) -> Path:
    """Build (or look up) the image of a TDXfile; its real store directory."""
    from tdxstore.cli.app import open_store
    from tdxstore.cli.lock import prepare_build
    from tdxstore.image import pipeline

    store = open_store()
    locked = prepare_build(path, False)
    with store.gc_guard():
        _plan, sp, _ran = pipeline.build(store, path, fmt=fmt, import_paths=locked,
                                         phase=lambda m: print(m, file=sys.stderr, flush=True))
    return store.real_path(sp)


def _at_revision(rev: str, path: Path, fmt: str | None) -> Path:
    """Build the TDXfile `path` as it is at git revision `rev` (its work tree's repository)."""
    import io
    import tarfile
    import tempfile

    from tdxstore._fs import extract_tar, remove_tree
    from tdxstore.cli.app import open_store
    from tdxstore.sandbox import process

    if rev.startswith("-"):
        raise DiffError(f"{rev!r} is not a git revision", code="diff-bad-revision")
    where = path if path.is_dir() else path.parent
    git = ["git", "-c", "safe.directory=*", "-C", str(where.resolve())]
    top = Path(process.run([*git, "rev-parse", "--show-toplevel"], what="git rev-parse").stdout.decode().strip())
    rel = where.resolve().relative_to(top)
    done = process.run(["git", "-c", "safe.directory=*", "-C", str(top), "archive", "--format=tar", rev, "--",
                        rel.as_posix()], check=False, what="git archive")
    if done.returncode != 0:
        raise DiffError(f"cannot read {str(rel)!r} at git revision {rev!r}: "
                        f"{done.stderr.decode('utf-8', 'replace').strip()}", code="diff-bad-revision")
    home = open_store().tmp
    tmp = Path(tempfile.mkdtemp(prefix="diff-rev-", dir=home))
    try:
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tf:
            extract_tar(tf, tmp)
        return _build(tmp / rel / (path.name if not path.is_dir() else ""), fmt)
    finally:
        remove_tree(tmp)


def _image_dir(arg: str, fmt: str | None) -> Path:
    """The real directory of the image `arg` names (building a TDXfile's image when needed)."""
    from tdxstore.cli.app import open_store
    from tdxstore.store.path import split_logical

    path = Path(arg)
    if _is_tdxfile(path):
        return _build(path, fmt)
    rev, sep, rest = arg.partition(":")
    if sep and rev and not path.exists() and split_logical(arg) is None and _is_tdxfile(Path(rest or ".")):
        return _at_revision(rev, Path(rest or "."), fmt)
    if split_logical(arg) is not None or path.is_symlink():
        store = open_store()
        sp = store.parse(arg)
        if not store.is_valid(sp):
            raise DiffError(f"{sp} is not a valid store path", hint="build it first", code="diff-not-image")
        return store.real_path(sp)
    if not path.exists():
        raise DiffError(f"{arg!r} does not exist", hint="pass store paths, result links or TDXfiles",
                        code="diff-not-image")
    return path


def _predicted(image: Path, blobs: Path) -> dict[str, object]:
    """The image's measurements predicted again with the blobs, on the firmware its manifest names."""
    from tdxstore.cli.app import open_store
    from tdxstore.debian.pins import FIRMWARE_FILE
    from tdxstore.diff.image import predicted_manifest
    from tdxstore.disk.manifest import DEFAULT_PROFILE
    from tdxstore.measure import load_profile

    try:
        named = json.loads((image / "measurements.json").read_text()).get("firmware_store_path")
    except (OSError, ValueError) as e:
        raise DiffError(f"{str(image)!r} has no readable measurements.json", hint="--blobs needs UKI images",
                        code="diff-not-manifest") from e
    store = open_store()
    sp = store.parse(str(named))
    if not store.is_valid(sp):
        raise DiffError(f"the firmware {sp} of {str(image)!r} is not in the store", hint="build the image here",
                        code="diff-no-firmware")
    firmware = (store.real_path(sp) / FIRMWARE_FILE).read_bytes()
    return predicted_manifest(image, firmware, load_profile(DEFAULT_PROFILE, blobs))


def diff_cmd(
    a: Annotated[str, typer.Argument(metavar="A", help="An image: store path, result link, TDXfile or "
                                                       "REV:TDXFILE (a git revision of one).")],
    b: Annotated[str, typer.Argument(metavar="B", help="The image to compare A with.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for CI).")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Add diffoscope's report (slow on big images).")] = False,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Format of TDXfile images (default: "
                                                                   "the image's).")] = None,
    blobs: Annotated[Path | None, typer.Option("--blobs", help="Platform blobs of the target host: predict "
                                                               "RTMR0 too (tdx measure --blobs).")] = None,
) -> None:
    """Say what changed between two built images and which measurements (MRTD, RTMR0-2) it moves."""
    from tdxstore.diff import diff_images

    da, db = _image_dir(a, fmt), _image_dir(b, fmt)
    manifests = (_predicted(da, blobs), _predicted(db, blobs)) if blobs is not None else None
    result = diff_images(da, db, a, b, deep=deep, manifests=manifests)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(result.render(), nl=False)
    if not result.identical:
        raise typer.Exit(1)

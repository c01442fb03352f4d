"""`tdx build` (L4): evaluate a TDXfile, build its image through the store, link the result."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from tdxstore.image.pipeline import Hooks, PackagesHook
    from tdxstore.store.store import Store


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _warn(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        _say(f"warning: {w}")


def build_cmd(
    tdxfile: Path = typer.Argument(Path("TDXfile"), help="The TDXfile (or a directory holding one)."),
    out: Path = typer.Option(Path("out"), "--output", "-o", help="Where to link the built image."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="tar, directory or uki (default: the image's)."),
    emit_mkosi: Path | None = typer.Option(None, "--emit-mkosi", help="Write the mkosi configuration here, "
                                                                      "do not build."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be built, fetched and installed."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Independent builds in parallel."),
    frozen: bool = typer.Option(False, "--frozen", help="Fail if tdx.lock is missing or stale; fetch only "
                                                        "what it pins."),
    check: bool = typer.Option(False, "--check", help="Rebuild the built image independently and compare "
                                                      "every artifact (docs/proving.md)."),
    keep: bool = typer.Option(False, "--keep", help="With --check: keep the second build's store."),
    as_json: bool = typer.Option(False, "--json", help="With --check: print the outcome as JSON."),
    offline: bool = typer.Option(False, "--offline", help="Download nothing; list what is missing up front."),
) -> None:
    """Build the image a TDXfile describes; print its store path."""
    from tdxstore.cli.app import open_store
    from tdxstore.cli.check import record_build
    from tdxstore.cli.lock import prepare_build
    from tdxstore.cli.transfer import configure
    from tdxstore.image import pipeline
    from tdxstore.store.gc import add_root
    from tdxstore.store.realise import Options

    configure(store := open_store(), offline)
    locked = prepare_build(tdxfile, frozen)  # the locked modules' store paths, first on sys.path
    if emit_mkosi is not None:
        from tdxstore.mkosi.config import write_config

        p = pipeline.evaluate(tdxfile, fmt, store, import_paths=locked, **_hooks(tdxfile, frozen, fetch=False)(store))
        _warn(p.warnings)
        write_config(p.config, emit_mkosi)
        _say(f"wrote the mkosi configuration of {p.image.name!r} ({p.fmt.value}) to {emit_mkosi}")
        return
    if check:
        from tdxstore.cli.check import run_check

        run_check(store, tdxfile, fmt=fmt, jobs=jobs if jobs > 1 else None, keep=keep, as_json=as_json,
                  import_paths=locked, hooks=_hooks(tdxfile, frozen))
        return
    if dry_run:
        p = pipeline.image_derivation(store, pipeline.evaluate(tdxfile, fmt, store, import_paths=locked,
                                                               **_hooks(tdxfile, frozen, fetch=False)(store)))
        _warn(p.warnings)
        d = pipeline.dry_run(store, p)
        print(f"image {d.image.out} {'(valid: nothing to do)' if d.image_valid else '(would be built by mkosi)'}")
        print(f"derivation {d.image.drv_path}")
        if not d.mkosi_valid:
            print("fetch mkosi 25.3 (Debian .deb, SHA-256 pinned)")
        for drv in d.builds.build:
            print(f"build {drv.drv_path}")
        for drv in d.builds.valid:
            print(f"valid {drv.out}")
        print("install " + " ".join(d.packages))
        return
    # One GC guard from evaluation to the result link: a gc waits until the image is rooted.
    started = time.monotonic()
    with store.gc_guard():
        plan, image, ran = pipeline.build(store, tdxfile, fmt=fmt, options=Options(jobs=jobs), phase=_say,
                                         import_paths=locked, **_hooks(tdxfile, frozen)(store))
        out.mkdir(parents=True, exist_ok=True)
        link = add_root(store, out / plan.image.name, image)
        record_build(store, tdxfile, image, ran=ran, started=started, jobs=jobs)
    if plan.fmt.value == "directory":
        tree = pipeline.unpack_directory(store.real_path(image) / "image.tar", out / f"{plan.image.name}.rootfs")
        _say(f"root file system unpacked at {tree}")
    _say(("built" if ran else "up to date:") + f" {plan.image.name} ({plan.fmt.value}) -> {link}")
    if plan.fmt.value == "uki":
        _report_size(store.real_path(image), directories=5 if ran else 0)
    print(image)


def _hooks(tdxfile: Path, frozen: bool, *, fetch: bool = True) -> Callable[[Store], Hooks]:
    """For a store: how the pipeline lowers typed builds and finds the image's locked packages."""
    from tdxstore.cli.builds import Lowering

    directory = (tdxfile if tdxfile.is_dir() else tdxfile.parent).resolve()

    def hooks(store: Store) -> Hooks:
        return {"lower": Lowering(store, directory, frozen=frozen),
                "packages": _packages(tdxfile, store, frozen, fetch=fetch)}

    return hooks


def _packages(tdxfile: Path, store: Store, frozen: bool, *, fetch: bool = True) -> PackagesHook | None:
    """The image's locked Debian packages (`tdxstore.cli.debian`), when the project has a tdx.lock."""
    from tdxstore.cli.debian import build_hook
    from tdxstore.lock.lockfile import LOCK_NAME

    directory = (tdxfile if tdxfile.is_dir() else tdxfile.parent).resolve()
    return build_hook(directory / LOCK_NAME, store, frozen=frozen, fetch=fetch, say=_say)


def _report_size(built: Path, *, directories: int) -> None:
    """The UKI's size and largest parts; the initrd's directories only after a build (reading it costs ~1 s)."""
    from tdxstore.disk.manifest import BuiltImage
    from tdxstore.measure.footprint import uki_footprint

    for line in uki_footprint(BuiltImage.at(built).uki.read_bytes(), directories=directories).describe():
        _say(line)

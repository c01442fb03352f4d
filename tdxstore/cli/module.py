"""`tdx module hash|validate|new` (L4): module development commands (parse, call one function, print)."""

from __future__ import annotations

from pathlib import Path

import typer

module_app = typer.Typer(help="Develop modules: content hash, API check, scaffold.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(module_app, name="module")


@module_app.command("hash")
def hash_cmd(directory: Path = typer.Argument(..., help="The module directory.")) -> None:
    """Print the module's content hash (spec §8.3), the `integrity` tdx.lock records for it."""
    from tdxstore.store.tree import tree_hash

    print(tree_hash(directory))


@module_app.command("validate")
def validate_cmd(directory: Path = typer.Argument(..., help="The module directory.")) -> None:
    """Check that the module is an importable package exposing apply(image, ...) or a class with apply()."""
    from tdxstore.lock.module import validate
    from tdxstore.store.tree import tree_hash

    report = validate(directory)
    print(f"package:   {report.package}" + (f" {report.version}" if report.version else ""))
    for fn in report.functions:
        print(f"function:  {report.package}.{fn}(image, ...)")
    for cls in report.classes:
        print(f"class:     {report.package}.{cls}(...).apply(image)")
    print(f"integrity: {tree_hash(report.directory)}")
    print("ok")


@module_app.command("new")
def new_cmd(
    name: str = typer.Argument(..., help="Distribution name, e.g. tdx-prover."),
    parent: Path = typer.Option(Path("."), "--dir", help="Where to create the module directory."),
) -> None:
    """Scaffold a module: pyproject.toml, the package with apply(image), a data dir and a test."""
    from tdxstore.lock.module import scaffold

    dest = scaffold(name, parent)
    print(dest)

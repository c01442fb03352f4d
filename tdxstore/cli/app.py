"""The `tdx` command (L4): builds the typer app and renders every TdxError once.

Each command group lives in its own module with a `register(app)` function; command bodies parse,
call one library function and print. Heavy imports happen inside commands so `tdx --help` is fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

import typer

from tdxstore.errors import TdxError

# Command-group modules, each exposing `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "tdxstore.cli.store",
    "tdxstore.cli.realise",
    "tdxstore.cli.fetch",
    "tdxstore.cli.image",
    "tdxstore.cli.measure",
)

app = typer.Typer(
    name="tdx",
    help="Build reproducible, measured Intel TDX VM images from a TDXfile, on a Nix-style store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help, as mkosi's and Nix's: typer's rich panels print "<bool>" after every flag.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show what is run."),
) -> None:
    if debug:
        os.environ["TDX_DEBUG"] = "1"
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _e:
        if _e.name != _name:
            raise
        continue
    _mod.register(app)


def _full_short_help(typer_app: typer.Typer) -> None:
    """List each command with its docstring's whole first paragraph (click would cut it at ~45 columns)."""
    for info in typer_app.registered_commands:
        doc = (info.help or (info.callback.__doc__ if info.callback else None) or "").strip()
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _full_short_help(group.typer_instance)


_full_short_help(app)


def render_error(err: TdxError) -> None:
    """Print an error as `error: …`, `hint: …` and its detail, to stderr."""
    stream = sys.stderr
    print(f"error: {err.message}", file=stream)
    if err.hint:
        print(f"hint: {err.hint}", file=stream)
    if err.detail:
        print(err.detail.rstrip("\n"), file=stream)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: the one place errors are rendered and mapped to exit codes."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except TdxError as err:
        if os.environ.get("TDX_DEBUG"):
            traceback.print_exc()
        render_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # Usage errors of the command-line parser (click's, vendored by newer typer releases): they know
        # how to show themselves and which exit code they mean.
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The `tdx` command (L4): builds the typer app and renders every TdxError once.

Each command group lives in its own module with a `register(app)` function; command bodies parse,
call one library function and print. `COMMANDS` is the one table of commands: only the module of
the command being run is imported and turned into a click command, so start-up stays small, and
`tdx --help` lists the table without importing any of them.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from tdxstore.errors import NoSpaceError, TdxError

if TYPE_CHECKING:
    from pathlib import Path

    from tdxstore.store.store import Store

#: command name -> (module exposing `register(app: typer.Typer) -> None`, one-line help for `tdx --help`).
#: The help is the first line of the command's docstring (tests/unit/cli/test_app.py checks it).
COMMANDS: dict[str, tuple[str, str]] = {
    "realise": ("tdxstore.cli.realise", "Build a derivation (and what it needs) and print its output paths."),
    "log": ("tdxstore.cli.realise", "Print the build log of a path."),
    "show-derivation": ("tdxstore.cli.realise", "Print a derivation as readable JSON."),
    "why-depends": ("tdxstore.cli.realise", "Show a chain of references from PACKAGE to DEPENDENCY, and where "
                                            "each reference occurs."),
    "graph": ("tdxstore.cli.graph", "Show the store paths behind TARGET, marking binary seeds, sources and built "
                                    "outputs."),
    "fetch": ("tdxstore.cli.fetch", "Compute the hash of a URL, file or git ref, or download and verify it "
                                    "into the store."),
    "build": ("tdxstore.cli.image", "Build the image a TDXfile describes; print its store path."),
    "measure": ("tdxstore.cli.measure", "Predict the TDX measurements (MRTD, RTMR0-2) of booting IMAGE (MRTD "
                                        "alone: --firmware FW only)."),
    "diff": ("tdxstore.cli.diff", "Say what changed between two built images and which measurements (MRTD, "
                                  "RTMR0-2) it moves."),
    "store": ("tdxstore.cli.store", "Inspect and maintain the content-addressed store."),
    "cache": ("tdxstore.cli.cache", "Push store paths to a binary cache and show what a cache holds."),
    "key": ("tdxstore.cli.cache", "Make the Ed25519 keys that sign store paths."),
    "lock": ("tdxstore.cli.lock", "Resolve the modules pyproject.toml declares and pin them (and the TDXfile's "
                                  "fetches) in tdx.lock."),
    "module": ("tdxstore.cli.module", "Develop modules: content hash, API check, scaffold."),
    "secrets": ("tdxstore.cli.secrets", "Show an image's declared secrets; deliver their values to a running VM."),
    "run": ("tdxstore.cli.run", "Boot a built image (or build a TDXfile first) under QEMU with OVMF; show its "
                                "serial console."),
}
# Plain click help, as mkosi's and Nix's: typer's rich panels print "<bool>" after every flag, and rich
# costs 0.1 s to import.
_SETTINGS: dict[str, Any] = {"pretty_exceptions_enable": False, "add_completion": False,
                             "rich_markup_mode": None, "context_settings": {"max_content_width": 120}}


def _full_short_help(typer_app: typer.Typer) -> None:
    """List each command with its docstring's whole first paragraph (click would cut it at ~45 columns)."""
    for info in typer_app.registered_commands:
        doc = (info.help or (info.callback.__doc__ if info.callback else None) or "").strip()
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _full_short_help(group.typer_instance)


def load_command(name: str) -> Any:
    """The click command `name` of COMMANDS, built from its module alone (None when unknown)."""
    if name not in COMMANDS:
        return None
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return None
    scratch = typer.Typer(**_SETTINGS)
    module.register(scratch)
    _full_short_help(scratch)
    sub = next((g.typer_instance for g in scratch.registered_groups if g.name == name), None)
    if sub is None:
        return typer.main.get_group(scratch).commands.get(name)
    # A group (`store`, `cache`, ...) is built without its commands; each is built when it is named,
    # so `tdx store add` does not turn the other ten `store` commands into click commands.
    pending, cls = sub.registered_commands, sub.info.cls
    sub.registered_commands, sub.info.cls = [], _LazyCommands
    try:
        group = typer.main.get_group(scratch).commands[name]
        assert isinstance(group, _LazyCommands)
    finally:
        sub.registered_commands, sub.info.cls = pending, cls
    group.pending = {_command_name(info): info for info in pending}
    return group


def _command_name(info: Any) -> str:
    return str(info.name or typer.main.get_command_name(info.callback.__name__))


class _LazyCommands(TyperGroup):
    """A command group whose commands are built from their typer records when first named."""

    pending: dict[str, Any]

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.pending, *(n for n in self.commands if n not in self.pending)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        info = self.pending.get(cmd_name)
        if cmd_name not in self.commands and info is not None:
            one = typer.Typer(**_SETTINGS)
            one.registered_commands = [info]
            self.commands[cmd_name] = typer.main.get_command(one)
        return self.commands.get(cmd_name)


class _LazyGroup(TyperGroup):
    """The root group: resolves a command name through COMMANDS on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            cmd = load_command(cmd_name)
            if cmd is None:
                return None
            self.commands[cmd_name] = cmd
        return self.commands[cmd_name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_module, text) in COMMANDS.items()])


app = typer.Typer(
    name="tdx",
    help="Build reproducible, measured Intel TDX VM images from a TDXfile, on a Nix-style store.",
    no_args_is_help=True,
    cls=_LazyGroup,
    **_SETTINGS,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show what is run."),
) -> None:
    import logging

    if debug:
        os.environ["TDX_DEBUG"] = "1"
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def render_error(err: TdxError) -> None:
    """Print an error as `error: …`, `hint: …` and its detail, to stderr."""
    stream = sys.stderr
    print(f"error: {err.message}", file=stream)
    if err.hint:
        print(f"hint: {err.hint}", file=stream)
    if err.detail:
        print(err.detail.rstrip("\n"), file=stream)


class _Interrupts:
    """Remembers a Ctrl-C: typer turns KeyboardInterrupt into a silent `return 130`."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        cls.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: the one place errors are rendered and mapped to exit codes."""
    _Interrupts.seen = False
    previous = signal.getsignal(signal.SIGINT)
    # only Python's own handler is replaced (not an ignored SIGINT), and only where signals can be set
    install = previous is signal.default_int_handler and threading.current_thread() is threading.main_thread()
    if install:
        signal.signal(signal.SIGINT, _Interrupts.handler)
    try:
        rv = _run(argv)
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)
    if _Interrupts.seen:
        print("interrupted", file=sys.stderr)
        return 130
    return rv


class _Opened(threading.local):
    """The stores the command that this thread runs has opened (`open_store`); None outside `main`."""

    stores: list[Store] | None = None


_opened = _Opened()


def open_store(home: Path | None = None) -> Store:
    """Open the store for the running command; `main` closes it when the command ends, however it ends.

    Every command opens its store through this, so closing is in one place (`_run`'s `finally`) and
    not in each command: SQLite then checkpoints and removes the WAL as the command ends, on success,
    on an error or on Ctrl-C, without waiting for the collector at exit. Outside `main` (a command
    function called directly) the caller closes the store.
    """
    from tdxstore.store.store import Store

    store = Store.open(home)
    if _opened.stores is not None:
        _opened.stores.append(store)
    return store


def _offline() -> Any:
    """`tdxstore.fetch.offline` if this process loaded it (a command that can run offline did); else None.
    Looked up, not imported: importing it would load the fetch code (and requests) for every command."""
    return sys.modules.get("tdxstore.fetch.offline")


def _run(argv: list[str] | None) -> int:
    outer, _opened.stores = _opened.stores, []
    try:
        return _run_command(argv)
    finally:
        stores, _opened.stores = _opened.stores, outer
        for store in reversed(stores):
            store.close()


def _run_command(argv: list[str] | None) -> int:
    if _offline() is not None:
        _offline().enable(False)  # a command run with --offline turns it on for itself
    try:
        rv = app(args=argv, standalone_mode=False)
        if _offline() is not None and _offline().missing():  # noted, and nothing checked it since
            raise _offline().error()
    except TdxError as err:
        if _offline() is not None and _offline().missing() and err.code != "offline-missing":
            err = _offline().error(because=err)  # what stopped an offline run is the missing downloads
        if os.environ.get("TDX_DEBUG"):
            traceback.print_exc()
        render_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        _Interrupts.seen = True
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a full disk the library did not put into words: still one line, never a traceback
        where = f" writing {e.filename!r}" if e.filename else ""
        render_error(NoSpaceError(f"no space left on the device{where}", code="no-space",
                                  hint="free some space (`tdx store gc`) or set TDX_HOME to a larger file system"))
        return NoSpaceError.exit_code
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except typer.Abort:
        _Interrupts.seen = True
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

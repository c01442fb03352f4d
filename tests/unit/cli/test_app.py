"""The command table: `tdx --help` lists COMMANDS without importing the command modules, so the
table must hold every registered command, each with the first line of its docstring."""

from __future__ import annotations

import importlib
import subprocess
import sys

import typer

from tdxstore.cli.app import COMMANDS, load_command


def test_table_help_is_each_commands_docstring() -> None:
    for name, (_module, text) in COMMANDS.items():
        cmd = load_command(name)
        assert cmd is not None, name
        assert (cmd.help or "").strip().splitlines()[0] == text, name


def test_every_registered_command_is_in_the_table() -> None:
    for module in sorted({m for m, _ in COMMANDS.values()}):
        scratch = typer.Typer()
        importlib.import_module(module).register(scratch)
        names = {c.name for c in scratch.registered_commands} | {g.name for g in scratch.registered_groups}
        assert names <= set(COMMANDS), (module, names - set(COMMANDS))
        assert all(COMMANDS[n][0] == module for n in names)


def test_help_imports_no_command_module() -> None:
    code = ("import sys; from tdxstore.cli.app import main; rc = main(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith(('tdxstore.cli.', 'tdxstore.store', 'rich', "
            "'pydantic'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "['tdxstore.cli.app']"

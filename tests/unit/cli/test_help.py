"""`tdx --help` and every subcommand's help: plain flags read as flags (no `<bool>` after them), options
that take a value show it, and command lists are not cut short."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from tdxstore.cli.app import app, main


def _commands() -> list[tuple[str, ...]]:
    """Every command path below `tdx`, e.g. ("store", "gc")."""
    # typer vendors its own click in recent releases: walk the command objects by their attributes.
    def walk(cmd: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        if hasattr(cmd, "list_commands"):  # the root group loads its commands lazily, on request
            for name in sorted(cmd.list_commands(None)):
                found += walk(cmd.get_command(None, name), (*path, name))
        return found
    return walk(typer.main.get_command(app), ())


def _params(path: tuple[str, ...]) -> list[Any]:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.get_command(None, name)
    return list(cmd.params)


def test_every_command_is_reached() -> None:
    paths = _commands()
    assert ("measure",) in paths and ("store", "gc") in paths and len(paths) >= 15


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "tdx")
def test_flags_read_as_flags(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out and "--help  " in out.replace("--help ", "--help  ")
    lines = out.splitlines()
    for param in _params(path):
        if param.param_type_name != "option":
            continue
        opts = ", ".join(sorted(param.opts, key=lambda o: o.startswith("--")))
        line = next(x for x in lines if x.strip().startswith(opts))
        after = line.strip()[len(opts):]
        if param.is_flag:  # "  --json   Print JSON.": two spaces, then the help, no metavar
            assert after.startswith("  ") or after == "", line
        else:  # "  --firmware <path>  ...": the value it takes
            assert after.startswith(" ") and not after.startswith("  "), line


def test_command_list_keeps_whole_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "..." not in out.split("Commands:")[1]
    assert "Predict the TDX measurements" in out and "--firmware FW only)." in out

"""The command table: `tdx --help` lists COMMANDS without importing the command modules, so the
table must hold every registered command, each with the first line of its docstring."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_a_group_builds_only_the_command_it_is_given() -> None:
    group = load_command("store")
    assert group is not None and group.commands == {}  # nothing built until a command is named
    names = group.list_commands(None)
    assert names[:3] == ["add", "ls", "path-info"] and {"gc", "verify", "export", "import", "sign"} <= set(names)
    add = group.get_command(None, "add")
    assert add is not None and add.name == "add" and list(group.commands) == ["add"]
    assert group.list_commands(None) == names  # the order of the source, whatever was built first
    assert group.get_command(None, "no-such-command") is None


def test_a_group_command_is_the_same_as_an_eager_build() -> None:
    """Built alone, each `store` command has the parameters and help typer gives it inside its group."""
    import tdxstore.cli.store as module

    scratch = typer.Typer()
    module.register(scratch)
    eager = typer.main.get_group(scratch).commands["store"]
    lazy = load_command("store")
    assert isinstance(eager, typer.core.TyperGroup) and lazy is not None
    for name in eager.list_commands(None):  # type: ignore[arg-type]
        want, got = eager.commands[name], lazy.get_command(None, name)
        assert [p.opts for p in got.params] == [p.opts for p in want.params], name
        assert got.help == want.help and got.hidden == want.hidden, name


def _modules_after(argv: list[str], home: str) -> list[str]:
    code = ("import sys; from tdxstore.cli.app import main; rc = main(sys.argv[1:]); "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True,
                         env={**os.environ, "TDX_HOME": home}).stdout
    return out.strip().splitlines()[-1].split()


def test_store_add_and_path_info_import_only_what_they_use(tmp_path: Path) -> None:
    """Start-up (issue: under 100 ms): neither command loads the image, diff or measurement code, the
    sandbox's value objects or tarfile."""
    src = tmp_path / "f.txt"
    src.write_text("hello\n")
    heavy = ("tdxstore.diff", "tdxstore.measure", "tdxstore.image.pipeline", "tdxstore.sandbox.spec",
             "tdxstore.sandbox.run", "tarfile", "requests", "cbor2")
    added = _modules_after(["store", "add", str(src)], str(tmp_path / "home"))
    assert not [m for m in added if m.startswith(heavy)]
    sp = subprocess.run([sys.executable, "-c", "from tdxstore.cli.app import main; main()", "store", "add", str(src)],
                        check=True, capture_output=True, text=True,
                        env={**os.environ, "TDX_HOME": str(tmp_path / "home")}).stdout.strip()
    info = _modules_after(["store", "path-info", sp], str(tmp_path / "home"))
    assert "tdxstore.store.store" in info and not [m for m in info if m.startswith(heavy)]


def test_console_script_collects_garbage_while_the_command_runs_and_passes_its_exit_code() -> None:
    code = ("import gc, sys; import tdxstore.cli.app as app; "
            "app.main = lambda: (print(gc.isenabled(), gc.get_freeze_count() > 0), 7)[1]; "
            "from tdxstore.cli.entry import run; run()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout.split()) == (7, ["True", "True"])
    unknown = subprocess.run([sys.executable, "-c", "from tdxstore.cli.entry import run; run()", "no-such-command"],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr


# Run as the console script does, and again with no collection at all and no interpreter teardown
# (os._exit right after `main`): there only the command's own closing can remove the WAL.
_RUNNERS = {
    "console-script": "from tdxstore.cli.entry import run; run()",
    "closed-by-the-command": "import gc, os, sys; gc.disable(); from tdxstore.cli.app import main; "
                             "rc = main(sys.argv[1:]); sys.stdout.flush(); sys.stderr.flush(); os._exit(rc)",
}


@pytest.mark.parametrize("runner", sorted(_RUNNERS))
def test_every_command_closes_the_store_database_it_opened(tmp_path: Path, runner: str) -> None:
    """Every command closes its store as it ends (on success and on a user error), so SQLite
    checkpoints and removes its WAL: none is left behind after the console script exits."""
    src = tmp_path / "f.txt"
    src.write_text("hello\n")
    home = tmp_path / "home"

    def tdx(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-c", _RUNNERS[runner], *args], capture_output=True, text=True,
                              env={**os.environ, "TDX_HOME": str(home)})
        assert (home / "db.sqlite").is_file()
        assert not (home / "db.sqlite-wal").exists() and not (home / "db.sqlite-shm").exists(), (args, proc)
        return proc

    added = tdx("store", "add", str(src))
    assert added.returncode == 0, added.stderr
    sp = added.stdout.strip()
    assert tdx("store", "ls").stdout.split() == [sp]
    assert tdx("store", "path-info", sp).returncode == 0
    missing = tdx("store", "path-info", sp[:-len("f.txt")] + "g.txt")  # a user error: exit 1, one message
    assert missing.returncode == 1 and missing.stderr.startswith("error: "), missing.stderr
    exported = tdx("store", "export", sp, "-o", str(tmp_path / "f.tdx"))
    assert exported.returncode == 0 and (tmp_path / "f.tdx").stat().st_size > 0, exported.stderr

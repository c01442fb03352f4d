"""`tdx secrets list|push` (L5): show an image's declared secrets; deliver values to a running VM.

Values are read from the `--key` file into memory and written only to the agent's stream: never to
argv, the environment, the terminal, a log or an error message. Names are checked against the
TDXfile (when given) before connecting, and against the agent's manifest before any value is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tdxstore.image.model.secret import DeliveryMethod
    from tdxstore.secrets import SecretEntry

secrets_app = typer.Typer(help="Show an image's declared secrets; deliver their values to a running VM.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")


def _load(tdxfile: Path) -> tuple[DeliveryMethod, tuple[SecretEntry, ...]]:
    from tdxstore.cli.lock import prepare_build
    from tdxstore.image.secrets import delivery_method, entries
    from tdxstore.image.tdxfile import load_tdxfile

    image = load_tdxfile(tdxfile, prepare_build(tdxfile))
    return delivery_method(image), entries(image)


@secrets_app.command("list")
def list_cmd(
    tdxfile: Path = typer.Argument(Path("TDXfile"), help="The TDXfile (or a directory holding one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print each declared secret (name, destination, owner, mode, description) and the delivery mechanism."""
    method, rows = _load(tdxfile)
    if as_json:
        doc = {"delivery": str(method), "secrets": [
            {"name": e.name, "dest": e.dest, "owner": e.owner, "group": e.group, "mode": f"{e.mode:04o}",
             "description": e.description} for e in rows]}
        print(json.dumps(doc, indent=2))
        return
    print(f"delivery: {method}")
    if not rows:
        print("no secrets declared")
        return
    table = [("NAME", "DESTINATION", "OWNER", "MODE", "DESCRIPTION")]
    table += [(e.name, e.dest, e.owner + (f":{e.group}" if e.group else ""), f"{e.mode:04o}", e.description)
              for e in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])


@secrets_app.command("push")
def push_cmd(
    key: Path = typer.Option(..., "--key", help="The secrets file: NAME=value or NAME=@file lines."),
    host: str | None = typer.Option(None, "--host", help="HOST[:PORT]: over ssh (port 22) with --host-key or "
                                                         "--host-key-from, else plain TCP to the agent (7979)."),
    host_key: str | None = typer.Option(None, "--host-key", metavar="SHA256:…",
                                        help="The guest's ssh host key fingerprint, as its console printed it."),
    host_key_from: Path | None = typer.Option(None, "--host-key-from", metavar="CONSOLE_LOG",
                                              help="Read the fingerprint from a console log (`tdx run "
                                                   "--console-log`)."),
    identity: Path | None = typer.Option(None, "--identity", "-i", help="The ssh private key to log in with "
                                                                        "(default: ssh's own)."),
    vsock: int | None = typer.Option(None, "--vsock", help="The VM's vsock CID (agent on port 7979)."),
    tdxfile: Path | None = typer.Option(None, "--tdxfile", help="Check names against this TDXfile before "
                                                                "connecting."),
) -> None:
    """Deliver the values in --key to a running VM's secrets agent; report accepted and missing names."""
    from tdxstore.errors import SecretError
    from tdxstore.image.secrets import VSOCK_PORT
    from tdxstore.secrets import (
        SSH_PORT,
        fingerprint_from_console,
        parse_env,
        parse_fingerprint,
        parse_host,
        push_ssh,
        push_tcp,
        push_vsock,
        refuse_undeclared,
    )

    if (host is None) == (vsock is None):
        raise SecretError("give exactly one of --host HOST[:PORT] and --vsock CID", code="usage")
    if host_key is not None and host_key_from is not None:
        raise SecretError("give one of --host-key and --host-key-from", code="usage")
    ssh = host_key is not None or host_key_from is not None
    if ssh and host is None:
        raise SecretError("--host-key goes with --host (ssh), not --vsock", code="usage")
    expected = parse_fingerprint(host_key) if host_key is not None else \
        fingerprint_from_console(host_key_from) if host_key_from is not None else None
    values = parse_env(key)
    if tdxfile is not None:
        _, found = _load(tdxfile)
        refuse_undeclared(values, {e.name for e in found}, str(tdxfile))
    if host is not None and expected is not None:
        result = push_ssh(*parse_host(host, SSH_PORT), values, expected, identity=identity)
    elif host is not None:
        result = push_tcp(*parse_host(host), values)
    else:
        result = push_vsock(vsock or 0, VSOCK_PORT, values)
    print(f"accepted: {', '.join(result.accepted)}")
    print(f"missing:  {', '.join(result.missing) or 'none, all secrets present'}")

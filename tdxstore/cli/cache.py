"""`tdx key generate` and `tdx cache push|info` (L5: parse, call one library function, print).

Keys are `store/signing.py`'s, caches `store/cache.py`'s (file://, http(s)://, s3://). A `--closure`
target of `cache push` is resolved as `tdx store export` resolves it (`cli/transfer.py`), so a cache
can hold everything needed to rebuild a TDXfile. Nothing here writes a secret key anywhere but the
file the user named (mode 0600, never overwritten).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

cache_app = typer.Typer(help="Push store paths to a binary cache and show what a cache holds.",
                        no_args_is_help=True, rich_markup_mode=None)
key_app = typer.Typer(help="Make the Ed25519 keys that sign store paths.", no_args_is_help=True,
                      rich_markup_mode=None)
_URLS = "file:///dir, http(s)://host/prefix (GET, PUT) or s3://bucket/prefix"


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
    app.add_typer(key_app, name="key")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


@key_app.command("generate")
def generate_key_cmd(
    name: str = typer.Argument(..., help="The key's name, e.g. ci.example.org-1 (carried in signatures)."),
    secret: Path | None = typer.Option(None, "--secret", help="Where to write the secret key, mode 0600 "
                                                              "(default: NAME.sec here)."),
    public: Path | None = typer.Option(None, "--public", help="Where to write the public key (default: "
                                                              "NAME.pub here)."),
) -> None:
    """Make an Ed25519 key pair for signing store paths (Nix's name:base64 format); print the public key."""
    from tdxstore._fs import atomic_write
    from tdxstore.errors import UsageError
    from tdxstore.store.signing import SecretKey

    key = SecretKey.generate(name)  # checks the name first
    secret = secret or Path(f"{name}.sec")
    public = public or Path(f"{name}.pub")
    for p in (secret, public):
        if p.exists():
            raise UsageError(f"{str(p)!r} already exists; a key file is never overwritten", code="key-exists",
                             hint="remove it first, or name other files with --secret/--public")
    atomic_write(secret, f"{key}\n".encode(), mode=0o600)
    atomic_write(public, f"{key.public}\n".encode())
    _say(f"secret key: {secret} (keep it off the image and out of git); public key: {public}")
    print(key.public)


@cache_app.command("push")
def push_cmd(
    cache: str = typer.Argument(..., help=f"The cache: {_URLS}."),
    paths: list[str] = typer.Argument(None, help="Store paths; their closures are pushed."),
    closure: list[str] = typer.Option([], "--closure", metavar="TARGET",
                                      help="A TDXfile or .drv: push everything needed to rebuild it (as "
                                           "`tdx store export` selects); repeatable."),
) -> None:
    """Copy the closures of store paths (or of TARGETs) to a binary cache; objects already there are skipped."""
    from tdxstore.cli.app import open_store
    from tdxstore.cli.transfer import targets_of
    from tdxstore.errors import UsageError
    from tdxstore.store.bundle import select
    from tdxstore.store.cache import open_cache, push

    if not paths and not closure:
        raise UsageError("nothing to push", code="cache-push-nothing",
                         hint="name store paths, or --closure TDXFILE")
    target = open_cache(cache)  # an unknown scheme is refused before the store is opened
    store = open_store()
    with store.gc_guard():
        sps = [store.parse(p) for p in paths or []]
        for sp in sps:
            store.query(sp)
        if closure:
            more, drvs = targets_of(store, closure)
            sel = select(store, more, drvs)
            for m in sel.missing:
                _say(f"warning: not in this store, so not pushed: {m}")
            sps += list(sel.roots)
        report = push(store, target, sps)
    _say(f"pushed {report.pushed} paths ({_size(report.bytes)} compressed), {report.present} already in {cache}")


@cache_app.command("info")
def cache_info_cmd(cache: str = typer.Argument(..., help=f"The cache: {_URLS}.")) -> None:
    """Print a binary cache's nix-cache-info and how many paths and bytes it holds."""
    from tdxstore.store.cache import open_cache, summary

    c = open_cache(cache)
    for k, v in sorted(c.info().items()):
        print(f"{k}: {v}")
    s = summary(c)
    if s is not None:
        print(f"Paths: {s.paths}")
        print(f"NarSize: {s.nar_bytes}")
        print(f"FileSize: {s.file_bytes}")

"""The user's transfer settings: substituters and trusted public keys (L3).

Read from `$TDX_CONFIG`, else `$XDG_CONFIG_HOME/tdx/config.toml`, else `~/.config/tdx/config.toml`;
a missing file means no caches and no trusted keys. Only callers that move paths between stores read
it (the CLI passes what it read down); nothing here touches the network or the store.

    substituters = ["file:///srv/cache", "http://cache.example:8080/tdx"]   # tried in order
    trusted-public-keys = ["ci-1:base64…"]
    cache-timeout = 5          # seconds before a cache counts as down for the rest of the run
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import TransferError, UsageError
from tdxstore.store.signing import PublicKey

_KEYS = {"substituters", "trusted-public-keys", "cache-timeout"}


@dataclass(frozen=True, slots=True)
class Settings:
    substituters: tuple[str, ...] = ()
    trusted_keys: tuple[PublicKey, ...] = ()
    cache_timeout: float = 5.0
    source: Path | None = None

    def __post_init__(self) -> None:
        if self.cache_timeout <= 0:
            raise UsageError(f"cache-timeout must be positive, not {self.cache_timeout}", code="settings-invalid")


def settings_path() -> Path:
    if os.environ.get("TDX_CONFIG"):
        return Path(os.environ["TDX_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tdx" / "config.toml"


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the settings file {str(path)!r}: {e}", code="settings-invalid",
                         hint="fix it (docs/store.md lists the keys) or point TDX_CONFIG elsewhere") from e
    unknown = set(data) - _KEYS
    if unknown:
        raise UsageError(f"{str(path)!r} sets unknown keys: {', '.join(sorted(unknown))}",
                         hint=f"known keys: {', '.join(sorted(_KEYS))}", code="settings-invalid")
    subs, keys = data.get("substituters", []), data.get("trusted-public-keys", [])
    if not all(isinstance(s, str) for s in [*subs, *keys]) or not isinstance(subs, list) or not isinstance(keys, list):
        raise UsageError(f"{str(path)!r}: substituters and trusted-public-keys must be lists of strings",
                         code="settings-invalid")
    try:
        trusted = tuple(PublicKey.parse(k, f"trusted-public-keys entry {k[:40]!r} in {str(path)!r}") for k in keys)
    except TransferError as e:
        raise UsageError(e.message, hint=e.hint, code="key-invalid") from e
    timeout = data.get("cache-timeout", 5.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise UsageError(f"{str(path)!r}: cache-timeout must be a number of seconds", code="settings-invalid")
    return Settings(tuple(subs), trusted, float(timeout), path)

"""Secrets delivered after measurement (L2): the manifest, `secrets.env` parsing and the sender.

`agent.py` is the in-guest receiver, shipped as a file into the image (stdlib only, never imported
by tdxstore); its source is read with `agent_source()`.
"""

from __future__ import annotations

from pathlib import Path

from tdxstore.secrets.client import (
    DEFAULT_PORT,
    PushResult,
    parse_host,
    push,
    push_tcp,
    push_vsock,
    refuse_undeclared,
)
from tdxstore.secrets.manifest import (
    AGENT_PATH,
    MANIFEST_PATH,
    SecretEntry,
    default_dest,
    manifest_json,
    parse_env,
)

AGENT_FILE = Path(__file__).with_name("agent.py")


def agent_source() -> bytes:
    return AGENT_FILE.read_bytes()


__all__ = ["AGENT_FILE", "AGENT_PATH", "DEFAULT_PORT", "MANIFEST_PATH", "PushResult", "SecretEntry",
           "agent_source", "default_dest", "manifest_json", "parse_env", "parse_host", "push", "push_tcp",
           "push_vsock", "refuse_undeclared"]

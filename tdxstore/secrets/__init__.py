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
from tdxstore.secrets.ssh import (
    FINGERPRINT_MARKER,
    SSH_PORT,
    fingerprint,
    fingerprint_from_console,
    parse_fingerprint,
    push_ssh,
)

AGENT_FILE = Path(__file__).with_name("agent.py")


def agent_source() -> bytes:
    return AGENT_FILE.read_bytes()


__all__ = ["AGENT_FILE", "AGENT_PATH", "DEFAULT_PORT", "FINGERPRINT_MARKER", "MANIFEST_PATH", "SSH_PORT",
           "PushResult", "SecretEntry", "agent_source", "default_dest", "fingerprint", "fingerprint_from_console",
           "manifest_json", "parse_env", "parse_fingerprint", "parse_host", "push", "push_ssh", "push_tcp",
           "push_vsock", "refuse_undeclared"]

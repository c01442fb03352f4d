"""Secret declarations (`Image.secret()`, `Image.secret_delivery()`, spec §6.2–6.3).

Only declarations live here: a name, where the value will be placed at runtime, its owner and mode.
Secret VALUES never enter the model, the rendered configuration or the store; delivery itself is
another component's job. Validation happens on construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from tdxstore.errors import ImageError
from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An OpenSSH public key line without options: type, base64 blob, optional comment (sshd(8) AUTHORIZED_KEYS).
_PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}"
                         r"( [^\n\0]*)?$")


class DeliveryMethod(StrEnum):
    SSH = "ssh"
    VSOCK = "vsock"
    SCRIPT = "script"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret the VM receives after measurement; `dest` is where it is written at runtime."""

    name: str
    description: str = ""
    dest: str | None = None
    owner: str = "root"
    group: str | None = None
    mode: int = 0o400
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SECRET_NAME.match(self.name):
            raise ImageError(f"secret name {self.name!r} is not an identifier",
                             hint="use letters, digits and '_', e.g. 'API_KEY'", code="invalid-name")
        if self.description and "\n" in self.description:
            raise ImageError(f"description of secret {self.name} contains a newline",
                             hint="keep it to one line", code="invalid-value")
        if self.dest is not None:
            object.__setattr__(self, "dest", _validate.image_path(self.dest, f"dest of secret {self.name}"))
        _validate.account_name(self.owner, f"owner of secret {self.name}")
        if self.group is not None:
            _validate.account_name(self.group, f"group of secret {self.name}")
        object.__setattr__(self, "mode", _validate.file_mode(self.mode, f"mode of secret {self.name}"))


@dataclass(frozen=True, slots=True)
class SecretDelivery:
    """How secrets reach the VM; `fetch_script` (absolute host path) and its bytes only with method 'script';
    `authorized_keys` (public key lines: who may deliver) only with 'ssh'."""

    method: DeliveryMethod
    fetch_script: str | None = None
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)
    authorized_keys: tuple[str, ...] = ()
    script: bytes = b""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", DeliveryMethod(self.method))
        except ValueError:
            raise ImageError(f"secret delivery method {self.method!r} is unknown",
                             hint=f"use one of {', '.join(m.value for m in DeliveryMethod)}",
                             code="invalid-value") from None
        if (self.method is DeliveryMethod.SCRIPT) != (self.fetch_script is not None):
            raise ImageError("fetch_script= is required with secret_delivery('script') and only there",
                             hint="secret_delivery('script', fetch_script='./scripts/fetch-secrets.sh')",
                             code="invalid-value")
        if self.authorized_keys and self.method is not DeliveryMethod.SSH:
            raise ImageError("authorized_keys= goes with secret_delivery('ssh') only",
                             hint="secret_delivery('ssh', authorized_keys='./deliver.pub')", code="invalid-value")
        for line in self.authorized_keys:
            if not isinstance(line, str) or not _PUBLIC_KEY.match(line):
                raise ImageError(f"authorized key {str(line)[:40]!r} is not an OpenSSH public key line",
                                 hint="give the contents of a .pub file ('ssh-ed25519 AAAA... comment'), "
                                      "without options: tdx adds the forced command", code="invalid-value")

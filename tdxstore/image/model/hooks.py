"""Lifecycle hooks: shell commands run inside the image chroot at an mkosi phase.

`Image.run()` is the postinst phase (after packages, extra trees and builds are installed),
`Image.prepare()` runs right after package installation, `Image.finalize()` last, after mkosi's own
clean-ups. Hooks of one phase keep their declaration order; each becomes one `.chroot` script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite


class Phase(StrEnum):
    """mkosi script phases a hook can run in (the value is mkosi's directory stem)."""

    PREPARE = "prepare"
    POSTINST = "postinst"
    FINALIZE = "finalize"


@dataclass(frozen=True, slots=True)
class Hook:
    """One shell command (may span lines) for `phase`, run with `sh -eu` semantics in the image."""

    phase: Phase
    command: str
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))
        if not isinstance(self.command, str) or not self.command.strip() or "\0" in self.command:
            _validate.one_line(str(self.command), f"{self.phase.value} command")

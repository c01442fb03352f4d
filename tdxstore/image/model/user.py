"""System users declared with `Image.user()` (spec §6.1) and the shell lines that create them.

Users are created with `useradd` in a postinst script, before any file ownership fix-up and before
user hooks, so `chown` by name works in hooks. shadow's useradd takes the last-change date in
/etc/shadow from SOURCE_DATE_EPOCH (mkosi exports it to scripts), which keeps the image reproducible.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from tdxstore.errors import ImageError
from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite

NO_HOME = "/nonexistent"
HOME_MODE = 0o755


@dataclass(frozen=True, slots=True)
class User:
    """One account: `system` users get a low UID; `home`, when given, is created and owned by the user."""

    name: str
    system: bool = True
    home: str | None = None
    shell: str = "/usr/sbin/nologin"
    groups: tuple[str, ...] = ()
    uid: int | None = None
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)

    def __post_init__(self) -> None:
        _validate.account_name(self.name, "user name")
        if self.home is not None:
            object.__setattr__(self, "home", _validate.image_path(self.home, f"home of user {self.name!r}"))
        object.__setattr__(self, "shell", _validate.image_path(self.shell, f"shell of user {self.name!r}"))
        for group in self.groups:
            _validate.account_name(group, f"group of user {self.name!r}")
        if self.uid is not None and (isinstance(self.uid, bool) or not isinstance(self.uid, int)
                                     or not 0 < self.uid < 65534):
            raise ImageError(f"uid {self.uid!r} of user {self.name!r} is not a usable UID",
                             hint="use an integer from 1 to 65533 (0 is root)", code="invalid-value")


def create_lines(user: User) -> list[str]:
    """Shell lines creating `user` idempotently (a package may have created it already)."""
    q = shlex.quote
    argv = ["useradd"]
    if user.system:
        argv.append("--system")
    argv += ["--user-group", "--no-create-home", "--home-dir", user.home or NO_HOME, "--shell", user.shell]
    if user.uid is not None:
        argv += ["--uid", str(user.uid)]
    argv.append(user.name)
    lines = [f"getent passwd {q(user.name)} >/dev/null || {' '.join(q(a) for a in argv)}"]
    if user.groups:
        lines.append(f"usermod --append --groups {q(','.join(user.groups))} {q(user.name)}")
    if user.home is not None:
        lines.append(f"install -d -m {HOME_MODE:04o} -o {q(user.name)} -g {q(user.name)} {q(user.home)}")
    return lines


def group_lines(groups: list[str]) -> list[str]:
    """Shell lines creating supplementary groups that do not exist yet."""
    return [f"getent group {shlex.quote(g)} >/dev/null || groupadd --system {shlex.quote(g)}" for g in groups]

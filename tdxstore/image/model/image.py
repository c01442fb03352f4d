"""The `Image` collector: the object a TDXfile and its modules call (spec §2, §3, §6).

Every method validates its arguments into a frozen value object, records the user's call site and
raises ConflictError (naming both call sites) when two calls claim the same destination, user,
service, port or secret. It performs no builds and writes nothing; render.py turns it into mkosi
configuration. Reading a `src=` file or rendering a template happens at the call, so errors point there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tdxstore.errors import ConflictError, ImageError
from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite, caller_site
from tdxstore.image.model.files import FileEntry, read_source, render_template
from tdxstore.image.model.hooks import Hook, Phase
from tdxstore.image.model.kernel import KernelSettings
from tdxstore.image.model.secret import Secret, SecretDelivery
from tdxstore.image.model.service import Service, UnitValue, exec_line, normalise_extra_unit
from tdxstore.image.model.user import User
from tdxstore.mkosi.config import ImageFormat

SUPPORTED_BASES = {"debian": ("bookworm", "trixie")}
UNIT_DIR = "/etc/systemd/system"
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
T = TypeVar("T")


@dataclass(slots=True)
class LoadContext:
    """Set by load_tdxfile while a TDXfile runs: where relative paths resolve, which Images were made."""

    directory: Path
    created: list[Image] = field(default_factory=list)


LOADING: ContextVar[LoadContext | None] = ContextVar("tdx_loading", default=None)


def parse_base(base: str) -> tuple[str, str]:
    """'debian/bookworm' → ('debian', 'bookworm'); unknown distributions or releases are errors."""
    dist, _, release = str(base).partition("/")
    if release not in SUPPORTED_BASES.get(dist, ()):
        known = ", ".join(f"{d}/{r}" for d, rs in SUPPORTED_BASES.items() for r in rs)
        raise ImageError(f"unknown base {base!r}", hint=f"use one of: {known}", code="unknown-base")
    return dist, release


def _conflict(what: str, first: CallSite, second: CallSite, hint: str) -> ConflictError:
    return ConflictError(f"{what}: first at {first}, again at {second}", hint=hint, code="conflict")


def _seen(previous: Any, new: Any, what: str, hint: str) -> bool:
    """True when `new` repeats `previous` exactly (harmless); a different redefinition is a conflict."""
    if previous is None:
        return False
    if previous != new:
        raise _conflict(f"{what} with different settings", previous.site, new.site, hint)
    return True


class Image:
    """An image definition: `Image("my-node", base="debian/bookworm")`, then method calls."""

    def __init__(self, name: str, base: str = "debian/bookworm", *, format: str = "uki", slim: bool = True) -> None:
        if not isinstance(name, str) or not _IMAGE_NAME.match(name):
            raise ImageError(f"image name {name!r} is not valid",
                             hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
                             code="invalid-name")
        self.name = name
        self.base = base
        self.distribution, self.release = parse_base(base)
        try:
            self.format = ImageFormat(format)
        except ValueError:
            raise ImageError(f"output format {format!r} is unknown",
                             hint=f"use one of {', '.join(f.value for f in ImageFormat)}",
                             code="invalid-value") from None
        if not isinstance(slim, bool):
            raise ImageError(f"slim={slim!r} is not True or False", code="invalid-value")
        self.slim = slim  # bootable images without docs, translations, hwdb, unused kernel modules
        context = LOADING.get()
        self.directory = context.directory if context else Path.cwd()
        self.site = caller_site()
        self.kernel = KernelSettings()
        self._packages: dict[str, CallSite] = {}
        self._files: dict[str, FileEntry] = {}
        self._services: dict[str, Service] = {}
        self._ports: dict[int, Service] = {}
        self._users: dict[str, User] = {}
        self._hooks: list[Hook] = []
        self._builds: dict[str, tuple[object, CallSite]] = {}
        self._secrets: dict[str, Secret] = {}
        self._delivery: SecretDelivery | None = None
        if context is not None:
            context.created.append(self)

    def __repr__(self) -> str:
        return f"Image({self.name!r}, base={self.base!r}, format={self.format.value!r})"

    # --- read-only views (deterministic order) -------------------------------------------------------
    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted(self._packages))

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return tuple(self._files[d] for d in sorted(self._files))

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(self._services[n] for n in sorted(self._services))

    @property
    def users(self) -> tuple[User, ...]:
        return tuple(self._users[n] for n in sorted(self._users))

    @property
    def hooks(self) -> tuple[Hook, ...]:
        return tuple(self._hooks)

    @property
    def builds(self) -> tuple[object, ...]:
        return tuple(b for b, _ in self._builds.values())

    @property
    def build_sites(self) -> tuple[tuple[object, str], ...]:
        """Each build with the call site that added it (`file:line`), in the order they were added."""
        return tuple((b, str(site)) for b, site in self._builds.values())

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return tuple(self._secrets[n] for n in sorted(self._secrets))

    @property
    def delivery(self) -> SecretDelivery | None:
        return self._delivery

    # --- content ---------------------------------------------------------------------------------------
    def install(self, *packages: str | Iterable[str]) -> None:
        """Install Debian packages (`image.install("curl", "jq")`); repeats are harmless."""
        site = caller_site()
        for item in packages:
            for name in [item] if isinstance(item, str) else item:
                self._packages.setdefault(_validate.package_name(name), site)

    def file(self, dest: str, src: str | Path | None = None, content: str | bytes | None = None, *,
             mode: int | str = 0o644, owner: str = "root", group: str | None = None,
             overwrite: bool = False) -> None:
        """Place a file at `dest` from `src=` (resolved against the TDXfile's directory) or `content=`."""
        site = caller_site()
        if (src is None) == (content is None):
            raise ImageError(f"file {dest!r} needs exactly one of src= or content=",
                             hint="pass src='configs/x.conf' or content='...'", code="invalid-value")
        if src is not None:
            data, origin = read_source(src, self.directory)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content  # type: ignore[assignment]
            origin = "content"
        entry = FileEntry(dest, data, _validate.file_mode(mode, f"mode of {dest}"), owner, group or owner,
                          origin, site)
        self._add_file(entry, overwrite)

    def template(self, src: str | Path, dest: str, vars: Mapping[str, Any] | None = None, *,
                 mode: int | str = 0o644, owner: str = "root", group: str | None = None,
                 overwrite: bool = False) -> None:
        """Render a jinja2 template (StrictUndefined) with `vars` and place the result at `dest`."""
        site = caller_site()
        data, origin = render_template(src, self.directory, vars or {})
        entry = FileEntry(dest, data, _validate.file_mode(mode, f"mode of {dest}"), owner, group or owner,
                          f"template {origin}", site)
        self._add_file(entry, overwrite)

    def _add_file(self, entry: FileEntry, overwrite: bool) -> None:
        previous = self._files.get(entry.dest)
        if previous is not None and previous != entry and not overwrite:
            raise _conflict(f"file {entry.dest} is written twice", previous.site, entry.site,
                            "remove one call, or pass overwrite=True to the later one to replace the file")
        self._check_path_free(entry.dest, entry.site, "file")
        self._files[entry.dest] = entry

    def _check_path_free(self, dest: str, site: CallSite, kind: str) -> None:
        for secret in self._secrets.values():
            if secret.dest == dest:
                raise _conflict(f"{dest} is both secret {secret.name}'s destination and a {kind}",
                                secret.site, site, "secrets are placed at runtime; choose another path")
        if kind != "service unit" and dest.startswith(UNIT_DIR + "/"):
            unit = dest[len(UNIT_DIR) + 1:].removesuffix(".service")
            if unit in self._services:
                raise _conflict(f"{dest} is both a {kind} and the unit of service {unit!r}",
                                self._services[unit].site, site, "change the generated unit with extra_unit=")

    # --- services and users ----------------------------------------------------------------------------
    def service(self, name: str, exec: str | Sequence[str], *, description: str = "",
                after: Sequence[str] | None = None, requires: Sequence[str] | None = None,
                wants: Sequence[str] | None = None, before: Sequence[str] | None = None,
                restart: str = "no", user: str | None = None, group: str | None = None,
                environment: Mapping[str, str] | None = None, working_directory: str | None = None,
                ports: Sequence[int] | None = None, type: str = "simple",
                wanted_by: Sequence[str] | None = ("multi-user.target",),
                extra_unit: Mapping[str, Mapping[str, UnitValue]] | None = None, enable: bool = True,
                specifiers: bool = False) -> None:
        """Declare a systemd service `<name>.service`; `enable=True` starts it at boot (via wanted_by).

        `exec` reaches the program as written (`%` is escaped); `specifiers=True` lets systemd expand
        its unit specifiers (`%i`, `%U`, ...) in it instead.
        """
        site = caller_site()
        svc = Service(
            name=name, exec=exec_line(exec), description=description,
            after=_validate.string_list(after, "after"), requires=_validate.string_list(requires, "requires"),
            wants=_validate.string_list(wants, "wants"), before=_validate.string_list(before, "before"),
            restart=restart, user=user, group=group,
            environment=tuple(sorted((environment or {}).items())), working_directory=working_directory,
            ports=tuple(sorted(set(ports or ()))), type=type,
            wanted_by=_validate.string_list(wanted_by, "wanted_by"),
            enable=enable, extra_unit=normalise_extra_unit(extra_unit, name), specifiers=specifiers, site=site)
        if _seen(self._services.get(name), svc, f"service {name!r} is defined twice",
                 "define the service once; pass the differing settings to that one call"):
            return
        for port in svc.ports:
            owner = self._ports.get(port)
            if owner is not None:
                raise _conflict(f"port {port} is claimed by services {owner.name!r} and {name!r}",
                                owner.site, site, "give one of the services another port")
        unit_path = f"{UNIT_DIR}/{svc.unit_file}"
        if unit_path in self._files:
            raise _conflict(f"{unit_path} is both a file and the unit of service {name!r}",
                            self._files[unit_path].site, site, "use extra_unit= instead of writing the unit")
        self._check_path_free(unit_path, site, "service unit")
        self._services[name] = svc
        for port in svc.ports:
            self._ports[port] = svc

    def user(self, name: str, system: bool = True, home: str | None = None, shell: str = "/usr/sbin/nologin",
             groups: Sequence[str] | None = None, uid: int | None = None) -> None:
        """Create an account (spec §6.1); `home`, when given, is created and owned by the user."""
        site = caller_site()
        new = User(name, system, home, shell, tuple(groups or ()), uid, site)
        if _seen(self._users.get(name), new, f"user {name!r} is defined twice",
                 "define the user once with all the settings it needs"):
            return
        for other in self._users.values():
            if uid is not None and other.uid == uid:
                raise _conflict(f"uid {uid} is given to users {other.name!r} and {name!r}", other.site, site,
                                "choose distinct uids")
        self._users[name] = new

    # --- hooks, builds, secrets ------------------------------------------------------------------------
    def run(self, command: str) -> None:
        """Run a shell command in the image chroot after packages, files and builds are installed."""
        self._hooks.append(Hook(Phase.POSTINST, command, caller_site()))

    def prepare(self, command: str) -> None:
        """Run a shell command in the image chroot right after package installation."""
        self._hooks.append(Hook(Phase.PREPARE, command, caller_site()))

    def finalize(self, command: str) -> None:
        """Run a shell command in the image chroot as the last step, after mkosi's clean-ups."""
        self._hooks.append(Hook(Phase.FINALIZE, command, caller_site()))

    def build(self, derivation: T) -> T:
        """Record a build (opaque here: anything with a `.name`); its outputs are installed by the builder."""
        site = caller_site()
        name = getattr(derivation, "name", None)
        if not isinstance(name, str) or not name:
            raise ImageError(f"image.build() got {type(derivation).__name__}, which has no name",
                             hint="pass a build made by a builder, e.g. Build.script(name=..., ...)",
                             code="invalid-value")
        previous = self._builds.get(name)
        if previous is not None and previous[0] is not derivation and previous[0] != derivation:
            raise _conflict(f"build {name!r} is added twice with different settings", previous[1], site,
                            "give the builds distinct names or add it once")
        self._builds.setdefault(name, (derivation, site))
        return derivation

    def secret(self, name: str, description: str = "", dest: str | None = None, owner: str = "root",
               mode: int | str = "0400", group: str | None = None) -> None:
        """Declare a secret delivered after measurement; its value never enters the image or the store."""
        site = caller_site()
        new = Secret(name, description, dest, owner, group, mode, site)  # type: ignore[arg-type]
        if _seen(self._secrets.get(name), new, f"secret {name} is declared twice", "declare each secret once"):
            return
        if new.dest is not None:
            for other in self._secrets.values():
                if other.dest == new.dest:
                    raise _conflict(f"secrets {other.name} and {name} share destination {new.dest}",
                                    other.site, site, "give each secret its own destination")
            if new.dest in self._files:
                raise _conflict(f"{new.dest} is both a file and secret {name}'s destination",
                                self._files[new.dest].site, site,
                                "secrets are placed at runtime; drop the file")
        self._secrets[name] = new

    def secret_delivery(self, method: str, fetch_script: str | Path | None = None,
                        authorized_keys: str | Path | Sequence[str] | None = None) -> None:
        """Choose how secrets reach the VM: 'ssh', 'vsock', or 'script' with `fetch_script=`.

        `authorized_keys` (ssh): a public key file (relative to the TDXfile) or key lines: who may deliver.
        """
        site = caller_site()
        script, body = None, b""
        if fetch_script is not None:
            body, script = read_source(fetch_script, self.directory)
        new = SecretDelivery(method, script, site, _public_keys(authorized_keys, self.directory),  # type: ignore[arg-type]
                             body)
        if self._delivery is not None and self._delivery != new:
            raise _conflict("secret delivery is chosen twice", self._delivery.site, site, "choose it once")
        self._delivery = new


def _public_keys(value: str | Path | Sequence[str] | None, directory: Path) -> tuple[str, ...]:
    """Key lines given inline (a string that starts like a key, or a list), or read from a .pub file."""
    if value is None:
        return ()
    if isinstance(value, str) and value.startswith(("ssh-", "ecdsa-", "sk-")):
        value = [value]
    if isinstance(value, (str, Path)):
        data, _ = read_source(value, directory)
        value = data.decode("utf-8", "replace").splitlines()
    return tuple(line.strip() for line in value if line.strip() and not line.lstrip().startswith("#"))

"""Systemd services declared with `Image.service()` and their unit file text.

A `Service` is a validated value object; `unit_text()` turns it into a deterministic `.service` file
(fixed section and key order, `extra_unit` keys overriding or extending generated ones). `exec` is
literal: its `%` are escaped unless `specifiers=True`. It never decides where the unit lands or how
it is enabled: render.py does.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tdxstore.errors import ImageError
from tdxstore.image.model import _validate
from tdxstore.image.model.callsite import CallSite

RESTART_VALUES = ("no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog")
SERVICE_TYPES = ("simple", "exec", "forking", "oneshot", "dbus", "notify", "notify-reload", "idle")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECTION = re.compile(r"^[A-Z][A-Za-z]*$")
_KEY = re.compile(r"^[A-Z][A-Za-z0-9]*$")

UnitValue = str | int | bool | Sequence[str]


@dataclass(frozen=True, slots=True)
class Service:
    """One systemd service; list fields are tuples, `extra_unit` is {section: ((key, values), ...)}."""

    name: str
    exec: str
    description: str = ""
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    restart: str = "no"
    user: str | None = None
    group: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    ports: tuple[int, ...] = ()
    type: str = "simple"
    wanted_by: tuple[str, ...] = ("multi-user.target",)
    enable: bool = True
    extra_unit: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = ()
    specifiers: bool = False
    site: CallSite = field(default=CallSite("<unknown>", 0), compare=False)

    def __post_init__(self) -> None:
        _validate.unit_name(self.name, "service name")
        _validate.one_line(self.exec, f"exec of service {self.name!r}")
        if not isinstance(self.specifiers, bool):
            raise ImageError(f"specifiers={self.specifiers!r} of service {self.name!r} is not True or False",
                             code="invalid-value")
        if self.description:
            _validate.one_line(self.description, f"description of service {self.name!r}")
        for units in (self.after, self.requires, self.wants, self.before, self.wanted_by):
            for unit in units:
                _validate.unit_name(unit.removesuffix(".service") or unit, f"unit {unit!r} of {self.name!r}")
        if self.restart not in RESTART_VALUES:
            raise ImageError(f"restart={self.restart!r} of service {self.name!r} is not a Restart= value",
                             hint=f"use one of {', '.join(RESTART_VALUES)}", code="invalid-value")
        if self.type not in SERVICE_TYPES:
            raise ImageError(f"type={self.type!r} of service {self.name!r} is not a systemd Type= value",
                             hint=f"use one of {', '.join(SERVICE_TYPES)}", code="invalid-value")
        for account in (self.user, self.group):
            if account is not None:
                _validate.account_name(account, f"user/group of service {self.name!r}")
        for key, value in self.environment:
            if not _ENV_KEY.match(key):
                raise ImageError(f"environment variable name {key!r} of service {self.name!r} is invalid",
                                 hint="use letters, digits and '_', not starting with a digit",
                                 code="invalid-value")
            if "\n" in value or "\0" in value:
                raise ImageError(f"environment value of {key} in service {self.name!r} contains a newline",
                                 hint="pass single-line values", code="invalid-value")
        if self.working_directory is not None:
            _validate.image_path(self.working_directory, f"working_directory of service {self.name!r}")
        for port in self.ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ImageError(f"port {port!r} of service {self.name!r} is not a TCP/UDP port number",
                                 hint="ports are integers from 1 to 65535", code="invalid-value")
        for section, entries in self.extra_unit:
            for key, values in entries:
                for value in values:
                    if "\n" in value:
                        raise ImageError(f"extra_unit [{section}] {key} of {self.name!r} contains a newline",
                                         hint="pass a list of values for repeated keys", code="invalid-value")

    @property
    def unit_file(self) -> str:
        return f"{self.name}.service"


def normalise_extra_unit(extra: Mapping[str, Mapping[str, UnitValue]] | None, name: str
                         ) -> tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    """{section: {key: value}} → sorted tuples; bools become yes/no, lists repeat the key."""
    if not extra:
        return ()
    out = []
    for section in sorted(extra):
        if not _SECTION.match(section):
            raise ImageError(f"extra_unit section {section!r} of service {name!r} is not a unit section name",
                             hint="use e.g. 'Unit', 'Service' or 'Install'", code="invalid-value")
        entries = []
        for key in sorted(extra[section]):
            if not _KEY.match(key):
                raise ImageError(f"extra_unit key {key!r} in [{section}] of service {name!r} is invalid",
                                 hint="systemd keys are CamelCase, e.g. MemoryMax", code="invalid-value")
            entries.append((key, _unit_values(extra[section][key])))
        out.append((section, tuple(entries)))
    return tuple(out)


def _unit_values(value: UnitValue) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("yes" if value else "no",)
    if isinstance(value, int | str):
        return (str(value),)
    return tuple(str(v) for v in value)


def _quote_env(key: str, value: str) -> str:
    # systemd's Environment= takes C-style double-quoted words; escape backslash, quote and '%' specifiers.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{key}={escaped}"'


def escape_specifiers(text: str) -> str:
    """`text` with every `%` doubled, so systemd passes it on instead of expanding a unit specifier
    (`%s` is the user's shell, `%U` the user id, `%a` the architecture: systemd.unit(5) "Specifiers")."""
    return text.replace("%", "%%")


def exec_line(command: str | Sequence[str]) -> str:
    """ExecStart= text: a string is taken as written, a list is quoted word by word."""
    if isinstance(command, str):
        return command
    return " ".join(shlex.quote(word) for word in command)


def unit_text(service: Service) -> str:
    """The `.service` file: [Unit], [Service], [Install] then other extra sections, in fixed order."""
    sections: dict[str, list[tuple[str, str]]] = {"Unit": [], "Service": [], "Install": []}
    unit = sections["Unit"]
    unit.append(("Description", service.description or f"{service.name} (tdx image service)"))
    for key, values in (("Wants", service.wants), ("Requires", service.requires),
                        ("After", service.after), ("Before", service.before)):
        if values:
            unit.append((key, " ".join(values)))
    svc = sections["Service"]
    svc.append(("Type", service.type))
    # Literal unless the service opted in: `date +%s` must reach date as written.
    svc.append(("ExecStart", service.exec if service.specifiers else escape_specifiers(service.exec)))
    svc.append(("Restart", service.restart))
    if service.user:
        svc.append(("User", service.user))
    if service.group:
        svc.append(("Group", service.group))
    if service.working_directory:
        svc.append(("WorkingDirectory", service.working_directory))
    svc.extend(("Environment", _quote_env(k, v)) for k, v in service.environment)
    if service.wanted_by:
        sections["Install"].append(("WantedBy", " ".join(service.wanted_by)))
    for section, entries in service.extra_unit:
        lines = sections.setdefault(section, [])
        for key, values in entries:
            # An extra key replaces generated lines of the same key; a list repeats the key.
            lines[:] = [(k, v) for k, v in lines if k != key]
            lines.extend((key, v) for v in values)
    out = [f"# Generated by tdx. Ports: {', '.join(map(str, service.ports)) or 'none'}."]
    for section, lines in sections.items():
        if lines:
            out.append(f"\n[{section}]")
            out.extend(f"{k}={v}" for k, v in lines)
    return "\n".join(out) + "\n"

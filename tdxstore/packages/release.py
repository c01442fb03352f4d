"""A suite's signed `InRelease`: signature check with gpgv, then the Release fields we rely on (L3).

Only the text gpgv says is signed is parsed (never the raw file, which may carry unsigned text
around the signed block). A signature counts when gpgv reports VALIDSIG for a key of the keyring;
any BADSIG refuses the file. The `SHA256:` table is the only source of index hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from tdxstore._fs import temporary_directory
from tdxstore.errors import CommandError, PackageError
from tdxstore.sandbox import process

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One line of the Release `SHA256:` table: a path below `dists/<suite>/`, its hash and size."""

    path: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.sha256) or self.size < 0 or ".." in self.path.split("/"):
            raise PackageError(f"malformed Release entry {self.path!r}", code="release-malformed")


@dataclass(frozen=True, slots=True)
class Release:
    """The verified fields of a suite's Release: names, the archive's timestamp and the index hashes."""

    suite: str
    codename: str
    date: datetime
    valid_until: datetime | None
    architectures: tuple[str, ...]
    components: tuple[str, ...]
    files: tuple[IndexFile, ...]

    def file(self, path: str) -> IndexFile | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def timestamp(self) -> str:
        """The archive's time as snapshot.debian.org spells it (`20260711T101637Z`)."""
        return self.date.strftime("%Y%m%dT%H%M%SZ")


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _date(value: str, what: str) -> datetime:
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError) as e:
        raise PackageError(f"{what} has an unreadable date {value!r}", code="release-malformed") from e


def parse_release(text: str, where: str) -> Release:
    """Parse the (already verified) text of a Release file."""
    f = _fields(text)
    missing = [k for k in ("Date", "SHA256") if k not in f]
    if missing or not (f.get("Codename") or f.get("Suite")):
        raise PackageError(f"{where} lacks the field(s) {', '.join(missing) or 'Codename'}",
                           hint="the file is not a Debian Release file", code="release-malformed")
    files = []
    for line in f["SHA256"].splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            files.append(IndexFile(parts[2], parts[0].lower(), int(parts[1])))
    return Release(
        suite=f.get("Suite", ""), codename=f.get("Codename", ""), date=_date(f["Date"], where),
        valid_until=_date(f["Valid-Until"], where) if "Valid-Until" in f else None,
        architectures=tuple(f.get("Architectures", "").split()), components=tuple(f.get("Components", "").split()),
        files=tuple(files),
    )


def verify_inrelease(inrelease: Path, keyring: Path = DEBIAN_KEYRING, *, where: str | None = None) -> str:
    """The signed text of `inrelease` if a key of `keyring` signed it; else PackageError `bad-signature`."""
    where = where or str(inrelease)
    if not keyring.is_file():
        raise PackageError(f"the archive keyring {str(keyring)!r} does not exist",
                           hint="install debian-archive-keyring (scripts/setup does)", code="keyring-missing")
    with temporary_directory(inrelease.parent, ".gpgv-") as tmp:
        out = tmp / "signed"
        argv: list[process.Arg] = ["gpgv", "--homedir", tmp, "--keyring", keyring, "--status-fd", "1",
                                   "--output", out, inrelease]
        try:
            result = process.run(argv, env=process.host_env({"LC_ALL": "C"}), check=False, what="gpgv")
        except CommandError as e:
            raise PackageError("gpgv cannot be run to check the signature of " + where,
                               hint="install gpgv (scripts/setup does)", detail=e.detail,
                               code="gpgv-missing") from e
        status = result.stdout.decode("utf-8", "replace")
        good = [ln for ln in status.splitlines() if ln.startswith("[GNUPG:] VALIDSIG ")]
        bad = [ln for ln in status.splitlines() if ln.startswith(("[GNUPG:] BADSIG ", "[GNUPG:] EXPKEYSIG "))]
        if not good or bad or not out.is_file():
            reason = "a signature is invalid" if bad else "no signature by a key of the keyring"
            raise PackageError(f"the signature of {where} does not verify: {reason}",
                               hint=f"the index was not signed by a key in {keyring}; check the mirror URL "
                                    "and that debian-archive-keyring is current",
                               detail=status + process.tail(result.stderr), code="bad-signature")
        return out.read_text("utf-8")


def check_fresh(release: Release, where: str, now: datetime | None = None) -> None:
    """Refuse a Release whose `Valid-Until` has passed (a replayed old index)."""
    now = now or datetime.now(UTC)
    if release.valid_until is not None and release.valid_until < now:
        raise PackageError(f"{where} expired on {release.valid_until:%Y-%m-%d %H:%M} UTC",
                           hint="the mirror serves an outdated index; try another mirror",
                           code="release-expired")

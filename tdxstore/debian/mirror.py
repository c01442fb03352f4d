"""Which Debian mirror a build uses: a declared input with a fixed default, never the host's apt sources.

`declared_mirrors()` is read once per build: `$TDX_DEBIAN_MIRROR` (and `$TDX_DEBIAN_SECURITY_MIRROR`)
if set, else Debian's own `http://deb.debian.org/debian` (and `-security`). Two hosts whose apt sources
differ therefore build the same image derivation. The deb822/one-line parsers remain for tools that
want to show the host's sources; their result never reaches a hash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import ImageError

MIRROR_ENV = "TDX_DEBIAN_MIRROR"
SECURITY_MIRROR_ENV = "TDX_DEBIAN_SECURITY_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"


@dataclass(frozen=True, slots=True)
class AptMirrors:
    """The Debian archive URL and, if known, the security archive URL (both without trailing '/')."""

    debian: str
    security: str | None = None

    def __post_init__(self) -> None:
        for url in (self.debian, self.security):
            if url is not None and not re.match(r"^(https?|file)://\S+$", url):
                raise ImageError(f"not a mirror URL: {url!r}", hint="use http://, https:// or file:// URLs",
                                 code="bad-mirror")


@dataclass(frozen=True, slots=True)
class _Source:
    uri: str
    suites: tuple[str, ...]


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def parse_deb822(text: str) -> list[_Source]:
    """`deb` sources of a deb822 `.sources` file (Enabled: no skipped)."""
    out = []
    for st in _deb822_stanzas(text):
        if "deb" not in st.get("types", "").split() or st.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(st.get("suites", "").split())
        out += [_Source(uri.rstrip("/"), suites) for uri in st.get("uris", "").split()]
    return out


def parse_one_line(text: str) -> list[_Source]:
    """`deb` lines of a one-line-style `sources.list` file."""
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            out.append(_Source(words[1].rstrip("/"), (words[2],)))
    return out


def _host_sources(etc: Path) -> list[_Source]:
    sources: list[_Source] = []
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        sources += parse_deb822(f.read_text(errors="replace"))
    for f in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if f.is_file():
            sources += parse_one_line(f.read_text(errors="replace"))
    return sources


def pick_mirrors(sources: Iterable[_Source]) -> AptMirrors | None:
    """The first source serving a plain release suite, and the first serving a `-security` suite."""
    debian = security = None
    for s in sources:
        if security is None and any(x.endswith("-security") or x.endswith("/updates") for x in s.suites):
            security = s.uri
        elif debian is None and any("-" not in x and "/" not in x for x in s.suites):
            debian = s.uri
    return AptMirrors(debian, security) if debian else None


def declared_mirrors(env: Mapping[str, str] | None = None) -> AptMirrors:
    """The mirror a build uses: `$TDX_DEBIAN_MIRROR` (+ security) if set, else Debian's default URLs.

    A user-set mirror is part of the image's hash (it is written into the mkosi configuration); the
    host's /etc/apt is never read here.
    """
    env = os.environ if env is None else env
    debian = (env.get(MIRROR_ENV) or DEFAULT_MIRROR).rstrip("/")
    security = env.get(SECURITY_MIRROR_ENV) or (DEFAULT_SECURITY_MIRROR if not env.get(MIRROR_ENV) else None)
    return AptMirrors(debian, security.rstrip("/") if security else None)


def host_mirrors(*, env: Mapping[str, str] | None = None, etc: Path = Path("/etc/apt")) -> AptMirrors:
    """`$TDX_DEBIAN_MIRROR` (+ `$TDX_DEBIAN_SECURITY_MIRROR`) if set, else the host's apt sources."""
    env = os.environ if env is None else env
    found = pick_mirrors(_host_sources(etc)) if etc.is_dir() else None
    if env.get(MIRROR_ENV):
        security = env.get(SECURITY_MIRROR_ENV) or None
        return AptMirrors(env[MIRROR_ENV].rstrip("/"), security.rstrip("/") if security else None)
    if found is None:
        raise ImageError(
            f"no Debian mirror found in {etc}/sources.list.d/*.sources or {etc}/sources.list",
            hint=f"set {MIRROR_ENV}=<Debian mirror URL> (and optionally {SECURITY_MIRROR_ENV})",
            code="no-mirror",
        )
    return found

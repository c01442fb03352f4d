"""A small signed Debian archive for tests: real .deb files, Packages.xz, a clearsigned InRelease.

`TestKey` makes an ed25519 key with gpg in a private GNUPGHOME and exports it as a keyring that
gpgv and apt accept. `Archive` writes `pool/` and `dists/<suite>/` under a directory, and
`ArchiveServer` serves it over HTTP on 127.0.0.1. Test helper only: it never touches a store.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import lzma
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

GPG_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
DATE = "Mon, 30 Nov 2026 12:00:00 UTC"


class TestKey:
    """An unprotected signing key in its own GNUPGHOME, and its public keyring file."""

    __test__ = False

    def __init__(self, home: Path, uid: str = "tdx test archive <archive@example.org>") -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        self._gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        self.keyring = home / "keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export").stdout)

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
                               "--passphrase", "", *args], env=GPG_ENV, check=True, capture_output=True)

    def clearsign(self, src: Path, dest: Path) -> None:
        self._gpg("--yes", "--digest-algo", "SHA256", "--clearsign", "--output", str(dest), str(src))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], env=GPG_ENV, check=False)


@dataclass
class Pkg:
    name: str
    version: str
    depends: str = ""
    essential: bool = False
    arch: str = "amd64"
    files: dict[str, bytes] = field(default_factory=dict)


def build_deb(pkg: Pkg, workdir: Path) -> Path:
    """A real .deb made by dpkg-deb (xz data, fixed mtimes) holding `pkg.files`."""
    root = workdir / f"{pkg.name}-{pkg.version}"
    shutil.rmtree(root, ignore_errors=True)  # a suite written again builds its packages afresh
    (root / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {pkg.name}", f"Version: {pkg.version}", f"Architecture: {pkg.arch}",
               "Maintainer: t <t@example.org>", "Description: test package"]
    if pkg.depends:
        control.append(f"Depends: {pkg.depends}")
    if pkg.essential:
        control.append("Essential: yes")
    (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
    for rel, data in (pkg.files or {f"usr/share/doc/{pkg.name}/v": pkg.version.encode()}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        (root / rel).chmod(0o755 if "bin/" in rel else 0o644)
    out = workdir / f"{pkg.name}_{pkg.version.split(':')[-1]}_{pkg.arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
                   env={**GPG_ENV, "SOURCE_DATE_EPOCH": "1700000000"}, check=True, capture_output=True)
    return out


class Archive:
    """A Debian-shaped archive directory: `add_suite` writes pool files, Packages.xz and InRelease."""

    def __init__(self, root: Path, key: TestKey) -> None:
        self.root = root
        self.key = key
        self.debs: dict[str, Path] = {}  # pool path -> file

    def add_suite(self, suite: str, pkgs: list[Pkg], *, valid_until: str | None = None,
                  listed: tuple[str, ...] = ()) -> None:
        """`listed`: extra index stanzas for files the archive does not serve (e.g. Debian's pinned tools)."""
        stanzas = list(listed)
        build = self.root / ".build" / suite
        build.mkdir(parents=True, exist_ok=True)
        for p in pkgs:
            deb = build_deb(p, build)
            pool = f"pool/main/{p.name[0]}/{p.name}/{deb.name}"
            dest = self.root / pool
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(deb.read_bytes())
            self.debs[pool] = dest
            control = (build / f"{p.name}-{p.version}" / "DEBIAN/control").read_text().rstrip("\n")
            data = deb.read_bytes()
            stanzas.append(f"{control}\nFilename: {pool}\nSize: {len(data)}\n"
                           f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
        dists = self.root / "dists" / suite
        index = dists / "main/binary-amd64"
        index.mkdir(parents=True, exist_ok=True)
        text = "\n".join(stanzas).encode()
        (index / "Packages").write_bytes(text)
        (index / "Packages.xz").write_bytes(lzma.compress(text))
        self.sign(suite, valid_until=valid_until)

    def sign(self, suite: str, *, valid_until: str | None = None, key: TestKey | None = None) -> None:
        """(Re)write Release and InRelease of `suite` from the index files as they are now."""
        dists = self.root / "dists" / suite
        lines = [f"Origin: Test\nSuite: {suite}\nCodename: {suite}\nDate: {DATE}\n"]
        if valid_until:
            lines.append(f"Valid-Until: {valid_until}\n")
        lines.append("Architectures: amd64\nComponents: main\nSHA256:\n")
        for rel in ("main/binary-amd64/Packages", "main/binary-amd64/Packages.xz"):
            data = (dists / rel).read_bytes()
            lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {rel}\n")
        (dists / "Release").write_text("".join(lines))
        (key or self.key).clearsign(dists / "Release", dists / "InRelease")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv: ArchiveServer = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.hits[self.path] += 1
        super().do_GET()


class ArchiveServer(http.server.ThreadingHTTPServer):
    """Serves a directory over HTTP on 127.0.0.1, counting requests per path."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


# What an image of bookworm asks mkosi for, as small test packages: the essential set (whose
# "usrmerge | usr-is-merged" mkosi's first apt run satisfies with usrmerge), the boot packages,
# the kernel in backports, and busybox-static (this host's static busybox) for the repository root.
BOOKWORM = [
    Pkg("base-files", "12.4"),
    Pkg("ess", "1.0", depends="usrmerge | usr-is-merged", essential=True),
    Pkg("usrmerge", "37", depends="perl"),
    Pkg("perl", "5.36"),
    Pkg("usr-is-merged", "37"),
    Pkg("libfoo", "1.2"),
    Pkg("systemd", "252", depends="libfoo"),
    Pkg("udev", "252"),
    Pkg("systemd-boot-efi", "252"),
    Pkg("passwd", "1"),
    Pkg("hello", "2.10-3", depends="libfoo"),
]


def trixie_tools() -> list[Pkg]:
    """mkosi's tools tree request as small trixie packages: each plain name (virtual ones such as
    git-core are real here), one `?exact-name(...)` target that exists (the others do not), and an
    essential set of its own."""
    from tdxstore.mkosi.config import TOOLS_PACKAGES

    plain = [Pkg(n, "9999.0" if n == "ovmf" else "2.0") for n in TOOLS_PACKAGES
             if not n.startswith("?") and n != "systemd"]
    return [Pkg("base-files", "13.8"), Pkg("ess", "2.0", essential=True), Pkg("systemd", "257", depends="libfoo"),
            Pkg("libfoo", "2.0"), Pkg("distribution-gpg-keys", "1.0"), *plain]


def pinned_stanzas() -> tuple[str, ...]:
    """Index stanzas naming Debian's real pinned mkosi, systemd-boot-efi and ovmf files (by their
    SHA-256; the files themselves are not served: a test that builds fetches them from Debian)."""
    from tdxstore.debian.pins import DEFAULT_PINS

    return tuple(f"Package: {name}\nVersion: {pin.version}\nArchitecture: {pin.file.rsplit('_', 1)[1][:-4]}\n"
                 f"Filename: {pin.pool}/{pin.file}\nSize: 1000\nSHA256: {pin.sha256}\n"
                 for name, pin in DEFAULT_PINS.by_package().items())


def bookworm_archive(root: Path, key: TestKey) -> Archive:
    """A signed archive with bookworm, -updates, -security and -backports, shaped like Debian's, and
    trixie, -updates, -security with mkosi's tools tree (`trixie_tools`)."""
    a = Archive(root, key)
    busybox = Pkg("busybox-static", "1:1.35.0-4", files={"bin/busybox": Path("/bin/busybox").read_bytes()})
    a.add_suite("bookworm", [*BOOKWORM, busybox])
    a.add_suite("bookworm-updates", [Pkg("hello-doc", "1")])
    a.add_suite("bookworm-security", [Pkg("sec-only", "1")])
    a.add_suite("bookworm-backports", [Pkg("linux-image-cloud-amd64", "6.12")])
    a.add_suite("trixie", trixie_tools(), listed=pinned_stanzas())
    a.add_suite("trixie-updates", [Pkg("jq", "2.1")])
    a.add_suite("trixie-security", [Pkg("sec-only", "1")])
    return a


def fake_debian_env(server: ArchiveServer, key: TestKey) -> dict[str, str]:
    """The settings that point tdx at `server` and trust `key` (instead of Debian and its keyring)."""
    return {"TDX_DEBIAN_MIRROR": server.url, "TDX_DEBIAN_SECURITY_MIRROR": server.url,
            "TDX_DEBIAN_KEYRING": str(key.keyring)}

"""A Go module proxy for tests: a plain directory (`<module>/@v/list`, `.info`, `.mod`, `.zip`) and go.sum lines.

`add_module` writes one module version the way a proxy serves it; `go_sum` gives the `h1:` lines
(Go's dirhash Hash1: SHA-256 over "sha256hex  name" lines of the zip's files, and of go.mod) that
`go` verifies. Serve the directory with `tests.debrepo.ArchiveServer` on 127.0.0.1. Test helper only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path


def _hash1(files: dict[str, bytes]) -> str:
    summary = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def add_module(proxy: Path, module: str, version: str, files: dict[str, str]) -> list[str]:
    """Publish `module@version` holding `files` (must include go.mod); return its two go.sum lines."""
    v = proxy / module / "@v"
    v.mkdir(parents=True, exist_ok=True)
    (v / "list").write_text(version + "\n")
    (v / f"{version}.info").write_text(json.dumps({"Version": version, "Time": "2026-01-01T00:00:00Z"}))
    (v / f"{version}.mod").write_text(files["go.mod"])
    prefixed = {f"{module}@{version}/{n}": c.encode() for n, c in files.items()}
    with zipfile.ZipFile(v / f"{version}.zip", "w") as z:
        for name in sorted(prefixed):
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), prefixed[name])
    return [f"{module} {version} {_hash1(prefixed)}",
            f"{module} {version}/go.mod {_hash1({'go.mod': files['go.mod'].encode()})}"]

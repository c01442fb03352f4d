"""Chains of derivations for the `tdx graph` tests: a seed from a .deb, two stages from a source, and the
Go chain (gccgo-12 -> 1.21.13 -> 1.22.12 -> 1.24.4) on that seed.

Pure values (nothing is built): `tdx graph tests/graphchain.py:stage2` evaluates this file.
"""

from __future__ import annotations

from tdxstore.builders.gosource import GoFromSource
from tdxstore.store.derivation import FixedOutput, derivation
from tdxstore.store.path import make_fixed_output_path

busybox = make_fixed_output_path("1" * 64, "busybox-bootstrap-root", recursive=True)  # stands for an added path
gcc = derivation("gcc-12_12.2.0_amd64.deb", "builtin:fetchurl", env={"url": "http://127.0.0.1:9/gcc.deb"},
                 fixed=FixedOutput("2" * 64))
seed = derivation("seed", "/bin/sh", ["-c", 'dpkg-deb -x "$DEB" "$out"'], root=busybox, inputs=[gcc],
                  env={"DEB": gcc.out.logical})
src = derivation("hello-1.0.tar.gz", "builtin:fetchurl", env={"url": "http://127.0.0.1:9/hello.tgz", "kind": "source"},
                 fixed=FixedOutput("3" * 64))
stage1 = derivation("stage1", "/bin/sh", ["-c", 'tar -xzf "$SRC" -C "$out"'], root=seed, inputs=[src],
                    env={"SRC": src.out.logical})
stage2 = derivation("stage2", "/bin/sh", ["-c", '"$PREV/bin/cc" -o "$out/hello"'], root=seed, inputs=[stage1, src],
                    env={"PREV": stage1.out.logical})
go = GoFromSource(version="1.24.4", root=seed).derivation()

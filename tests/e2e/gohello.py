"""Helpers of the Go bootstrap tests: a hello-world module, built with a chain's top stage and run.

The program prints `runtime.Version()`, so its output names the compiler that built it (the stage's
VERSION file), not the one the test expected. The build is a real `GoBuild` realised in `store`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tdxstore.builders.go import GoBuild
from tdxstore.builders.gosource import GoFromSource
from tdxstore.sandbox import process
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

HELLO = ('package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\n'
         'func main() { fmt.Println("hello from", runtime.Version()) }\n')


def hello_module(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "go.mod").write_text("module example.com/hello\n\ngo 1.19\n")
    (where / "main.go").write_text(HELLO)
    return where


def build_and_run_hello(store: Store, seed: StorePath, chain: GoFromSource, tmp_path: Path) -> str:
    """Build hello with `chain`'s top stage (on the seed), run the binary on the host; its stdout."""
    app = hello_module(tmp_path / chain.version)
    drv = GoBuild(src=str(app), output="/usr/local/bin/hello", compiler=chain).derivation_on(store, seed)
    realise(store, [drv])
    binary = store.real_path(drv.out) / "usr/local/bin/hello"
    return process.run([os.fspath(binary)], what="hello").stdout.decode()

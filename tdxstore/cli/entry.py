"""The `tdx` console script (L5): the process around `app.main`, shaped for a short start-up.

Start-up creates tens of thousands of objects (typer, click, the store's modules) that live as long
as the process. The cyclic collector would scan them over and over while they are imported, and once
more at exit. So the script imports with collection off, moves what start-up made into the
collector's permanent generation, and runs the command with collection on. What the command made is
still collected, at exit too: a database connection left in a cycle is closed then (SQLite
checkpoints and removes its WAL), though the store a command opens is closed by `app.main` already
(`open_store`). Only the script does this: `app.main` called in-process (tests,
`python -m tdxstore.cli.app`) leaves the collector as it finds it.
"""

from __future__ import annotations

import gc
import sys


def run() -> None:
    """Entry point of `tdx` (pyproject's `[project.scripts]`)."""
    gc.disable()
    try:
        from tdxstore.cli.app import main
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(main())

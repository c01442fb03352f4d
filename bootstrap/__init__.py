"""Seed definitions: the roots everything else is built from (today the busybox root of the sandbox).

Not part of the installed package: tests and benchmarks import it from the repository root.
"""

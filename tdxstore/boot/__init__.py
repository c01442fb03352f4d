"""Booting a built image under QEMU (L2): the harness tests use now and `tdx run` will use.

Runs QEMU only through the sandbox layer's process supervisor.
"""

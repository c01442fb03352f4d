"""Debian packages as data (L1): the .deb reader, the archive mirror setting, the pinned packages.

Pure: no process, no store; the derivations that fetch pinned packages are made above the store.
"""

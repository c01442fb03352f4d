"""Public facade of tdx-vm-sdk: `from tdx import Image, Build, fetch, fetch_git, hash_of`.

No logic lives here: every name is re-exported from `tdxstore`.
"""

from __future__ import annotations

from tdxstore.builders.build import Build
from tdxstore.builders.fetch import fetch, fetch_git, hash_of
from tdxstore.image.model.image import Image
from tdxstore.store.derivation import Derivation, FixedOutput, derivation
from tdxstore.store.path import StorePath

__all__ = ["Build", "Derivation", "FixedOutput", "Image", "StorePath", "derivation", "fetch", "fetch_git",
           "hash_of"]

"""tdx-vm-sdk implementation: a Nix-style store, sandboxed builds, mkosi images, TDX measurements.

The public, user-facing names live in the `tdx` facade package; this package holds the layers
(see docs/architecture.md): errors/_fs (L0) < sandbox, measure, debian (L1) < fetch, mkosi, disk,
boot (L2) < store (L3) < builders, image (L4) < cli (L5). Imports point downward only;
tests/unit/test_layers.py enforces it.
"""

__version__ = "0.1.0"

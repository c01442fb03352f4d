"""tdx-vm-sdk implementation: a Nix-style store, sandboxed builds, mkosi images, TDX measurements.

The public, user-facing names live in the `tdx` facade package; this package holds the layers
(see docs/architecture.md): errors/_fs (L0) < sandbox (L1) < store (L2) < builders, image,
measure (L3) < cli (L4). Imports point downward only; tests/unit/test_layers.py enforces it.
"""

__version__ = "0.1.0"

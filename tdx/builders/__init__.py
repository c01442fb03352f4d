"""Public builders: `from tdx.builders.go import GoBuild` (spec §7). Re-exports only."""

"""builders (see docs/architecture.md)."""

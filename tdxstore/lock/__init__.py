"""lock (see docs/architecture.md)."""

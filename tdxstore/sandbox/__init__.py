"""The bubblewrap sandbox and the one process runner (L1)."""

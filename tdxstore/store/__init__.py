"""The store: paths, NAR, derivations, database, realisation, garbage collection (L3)."""

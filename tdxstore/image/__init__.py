"""Images (L4): the `Image` model (`model/`), TDXfile evaluation, rendering to mkosi configuration,
the pinned Debian inputs as derivations, and `pipeline` (evaluate, derive, realise).
"""

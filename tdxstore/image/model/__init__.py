"""The `Image` model (L4): what a TDXfile declares, validated into frozen value objects.

No I/O beyond reading a `src=` file or template at the call, no builds, no mkosi: `render.py` turns
the model into mkosi configuration.
"""

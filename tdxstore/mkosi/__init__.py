"""mkosi 25.3 as a tool: its pinned runner, its one configuration writer, its tar re-packer (L2).

Nothing here knows about the Image model or the store database: callers pass host paths.
"""

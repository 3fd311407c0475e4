"""Layer 3: files in and out (checkpoints, datasets, video sources and sinks).

The overlay's frame sources: :mod:`.frames` (the types they share), :mod:`.video` (files,
folders, datasets, memory), :mod:`.bag_source` (bags, read by :mod:`vbp_live.recordings`),
:mod:`.live` (cameras, streams) and, above them, :func:`.sources.open_source`.
"""

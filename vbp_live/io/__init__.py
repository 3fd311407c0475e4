"""Layer 3: files in and out (checkpoints, datasets, video sources and sinks)."""

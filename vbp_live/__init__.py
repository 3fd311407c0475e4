"""vbp_live: real-time VisualBackProp overlays for end-to-end steering networks.

Layers (imports go one way, bottom up):

1. ``vbp_live.core``        pure math and rendering (numpy / OpenCV, no torch)
2. ``vbp_live.models``, ``vbp_live.attribution``   networks and attribution methods (torch, no I/O)
3. ``vbp_live.io``, ``data_prep``                  checkpoints, datasets, video sources and sinks
4. ``vbp_live.train``, ``vbp_live.stream``         training loop and streaming pipeline
5. ``vbp_live.cli``                                the ``vbp-live`` command (nothing imports it)
"""

__version__ = "0.1.0"

"""Udacity ROS1 bags played back with ground truth, through :mod:`vbp_live.recordings`' bag reader.

No second bag reader and no second frame loop: :class:`~vbp_live.recordings.bag.BagRecording`
does the reading (truncation-safe scan, topic choice, the 2016-10-25 left/center swap, zero header
stamps) and :class:`~vbp_live.io.recording_source.RecordingFrameSource` plays it, with
:func:`~vbp_live.recordings.labels.frame_steering` putting the steering reports onto the camera
stamps exactly as data preparation does. Frames outside the steering reports' time range (or
inside a gap) get no ground truth rather than a made-up value. A damaged bag plays what can be
read: the reader's warnings (messages skipped by reason, a cut, ...) are logged when the
source opens and kept in :attr:`BagFrameSource.warnings` for the run summary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vbp_live.io.recording_source import RecordingFrameSource
from vbp_live.recordings.bag import BagRecording
from vbp_live.recordings.options import CameraConfig, SyncConfig


class BagFrameSource(RecordingFrameSource):
    """One drive in one or more ``.bag`` files: camera frames + synchronized steering truth.

    A :class:`~vbp_live.io.recording_source.RecordingFrameSource` over a
    :class:`~vbp_live.recordings.bag.BagRecording`, named after its files.

    Args:
        paths: the bag file(s) of one drive (merged in time order).
        camera: which camera to play (``center`` by default).
        sync: ``linear`` interpolation (default) or ``zoh`` (zero-order hold).
        fps: the playback rate; None: measured from the camera stamps.
        topics: the camera topics to try, in order (another robot's or car's camera); empty: Udacity's
            ``/center_camera/image_color[/compressed]`` (:class:`~vbp_live.recordings.options.CameraConfig`).

    Attributes:
        paths: the bag files.
        bag: their reader (the same object as ``recording``).
        warnings: problems the reader found and survived, one line each (for the run summary).
        skipped: what the reader skipped, by reason (:class:`~vbp_live.recordings.base.SkipLog`).

    Raises:
        SourceError: the bags cannot be read or hold no camera frames (a bag without steering reports
            plays without truth, with a warning).
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], camera: str = "center",
                 sync: str = "linear", fps: float | None = None, topics: Sequence[str] = ()):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        camera_cfg = CameraConfig(name=camera, topics=tuple(topics)) if topics else CameraConfig(name=camera)
        self.bag = BagRecording(self.paths, camera_cfg, require_steering=False)  # no reports: no truth
        super().__init__(self.bag, ", ".join(map(str, self.paths)), SyncConfig(method=sync), fps=fps)

"""Open a frame source from a command-line SOURCE string: :func:`open_source`.

The one dispatcher over the overlay's sources (:mod:`vbp_live.io.video`,
:mod:`vbp_live.io.bag_source`, :mod:`vbp_live.io.live`); it sits above them so they never import
each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vbp_live.io.bag_source import BagFrameSource
from vbp_live.io.frames import FrameSource, SourceError, VideoInfo
from vbp_live.io.live import LiveSource, ReconnectPolicy, is_live_spec
from vbp_live.io.recording_source import RecordingFrameSource
from vbp_live.io.video import DatasetSource, ImageFolderSource, VideoFileSource
from vbp_live.recordings.formats import bag_files, detect_kind, open_recording


def open_source(
    spec: str,
    fps: float | None = None,
    live: bool | None = None,
    split: str | None = None,
    reconnect_s: float = 30.0,
    camera_topics: Sequence[str] = (),
) -> FrameSource:
    """Open SOURCE as given on the command line.

    * an integer (``0``): a camera; ``scheme://...``: a stream URL (MJPEG over HTTP, RTSP, ...);
      a string with ``!``: a GStreamer pipeline -- all live;
    * ``*.bag``, or a folder of ``.bag`` parts of one drive: Udacity ROS1 bags (ground truth
      from the steering reports);
    * a folder with ``manifest.yaml``: a prepared dataset;
    * any other recording :mod:`vbp_live.recordings` reads (a donkeycar tub or folder of tubs, a
      frame folder with ``data.txt`` or a labels CSV, a comma2k19 segment with ``video.hevc``, a
      simulator log, a bag dump), with ground truth;
    * another folder: its images; any other file: a video file.

    Args:
        spec: the SOURCE string.
        fps: frame rate override, for every kind of source (image folders have none; default 20).
        live: force live (drop stale frames) or file (keep every frame) behaviour.
        split: for prepared datasets, "train" or "test".
        reconnect_s: how long a lost live source may stay away before the run ends.
        camera_topics: for bags, the camera topics to try instead of Udacity's (``--camera-topic``).

    Raises:
        SourceError: SOURCE names nothing that exists or cannot be opened.
    """
    if is_live_spec(spec):
        if live is False:
            raise SourceError(f"{spec}: a camera or stream is always live")
        return LiveSource(spec, fps=fps, policy=ReconnectPolicy(give_up_s=reconnect_s))
    p = Path(spec)
    if not p.exists():
        raise SourceError(f"{spec}: no such file or folder (and not a camera index, URL or GStreamer pipeline)")
    bags = bag_files([p])
    if camera_topics and not bags:
        raise SourceError(f"{spec}: --camera-topic applies to ROS1 bags only, and this is not one")
    kind = None if bags or (p / "manifest.yaml").is_file() else detect_kind(p)
    if bags:
        src: FrameSource = BagFrameSource(bags, fps=fps, topics=camera_topics)
    elif kind is not None:
        src = RecordingFrameSource(open_recording([p], kind=kind), str(p), fps=fps)
    elif p.is_dir():
        src = DatasetSource(p, split, fps) if (p / "manifest.yaml").is_file() else ImageFolderSource(p, fps or 20.0)
    else:
        src = VideoFileSource(p, fps)
    if live:
        src.info = VideoInfo(**{**src.info.__dict__, "live": True})
    return src

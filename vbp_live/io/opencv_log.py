"""Keep OpenCV's and FFmpeg's own log lines out of the terminal while a source is probed or opened.

Opening a broken file or a missing camera makes OpenCV and FFmpeg print their own lines
(``moov atom not found``, ``cap_v4l.cpp ... can't open camera by index``, an OpenCV exception
text) before our one-line :class:`~vbp_live.io.frames.SourceError`. :func:`opencv_quiet`
silences them while a capture is opened; what went wrong is said once, by us.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import cv2

# FFmpeg inside OpenCV reads its log level from here on first use; -8 is AV_LOG_QUIET. A user who
# sets it (e.g. to 48 for FFmpeg's debug output) keeps their value.
FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"


@contextlib.contextmanager
def opencv_quiet() -> Iterator[None]:
    """Silence OpenCV's logging (which also carries FFmpeg's in OpenCV 5) inside the block."""
    os.environ.setdefault(FFMPEG_LOGLEVEL_ENV, "-8")
    old = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)

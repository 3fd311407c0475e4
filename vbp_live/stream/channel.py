"""A bounded queue between pipeline stages whose waits always re-check the stop event."""

from __future__ import annotations

import threading
from collections import deque

END = object()  # end-of-stream marker travelling through the queues
POLL_S = 0.05


class Stopped(Exception):
    """The stop event was set while a stage was waiting."""


class Channel:
    """A bounded FIFO between two stages that never waits without re-checking ``stop``.

    Args:
        maxsize: capacity.
        drop_oldest: when full, ``put`` discards the oldest item instead of waiting (live mode).
        stop: the pipeline's stop event.
    """

    def __init__(self, maxsize: int, drop_oldest: bool, stop: threading.Event):
        self.maxsize, self.drop_oldest, self.stop = max(1, maxsize), drop_oldest, stop
        self.items: deque = deque()
        self.cond = threading.Condition()

    def put(self, item: object) -> int:
        """Append ``item``; returns how many stale items were dropped. Raises :class:`Stopped`."""
        dropped = 0
        with self.cond:
            while len(self.items) >= self.maxsize:
                if self.drop_oldest:
                    self.items.popleft()
                    dropped += 1
                    continue
                if self.stop.is_set():
                    raise Stopped
                self.cond.wait(POLL_S)
            self.items.append(item)
            self.cond.notify_all()
        return dropped

    def get(self) -> object:
        """Oldest item, waiting as long as needed. Raises :class:`Stopped`."""
        with self.cond:
            while not self.items:
                if self.stop.is_set():
                    raise Stopped
                self.cond.wait(POLL_S)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def get_nowait(self) -> object | None:
        """Oldest item, or None when empty."""
        with self.cond:
            if not self.items:
                return None
            item = self.items.popleft()
            self.cond.notify_all()
            return item

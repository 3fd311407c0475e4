"""Deserialize ROS1 messages with the definitions stored in the bag itself.

A SteeringReport recorded with dbw_mkz_msgs 1.0.6 and one recorded with 1.0.7 have different
fields under the same name, so each distinct (type, definition) gets its own rosbags
typestore, built from the ``message_definition`` text of the bag's connection record.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype

from vbp_live.recordings.bagscan import BagConnection, BagError


class MessageTypes:
    """Cache of typestores, one per message definition found in the bags."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, str], Any] = {}
        self._by_conn: dict[BagConnection, tuple[Any, str]] = {}

    def store(self, conn: BagConnection) -> Any:
        """The typestore for this connection's definition (built once)."""
        return self._resolve(conn)[0]

    def _resolve(self, conn: BagConnection) -> tuple[Any, str]:
        hit = self._by_conn.get(conn)
        if hit is None:
            key = (conn.msgtype, hashlib.sha1(conn.msgdef.encode()).hexdigest())
            if key not in self._stores:
                self._stores[key] = _build_store(conn)
            hit = self._by_conn[conn] = (self._stores[key], normalize_msgtype(conn.msgtype))
        return hit

    def deserialize(self, conn: BagConnection, raw: bytes | memoryview) -> Any:
        """Deserialize one raw ROS1 message of ``conn``."""
        store, name = self._resolve(conn)
        return store.deserialize_ros1(raw, name)

    def field_names(self, conn: BagConnection) -> list[str]:
        """Top-level field names of the connection's message type."""
        return [name for name, _ in self.store(conn).fielddefs[normalize_msgtype(conn.msgtype)][1]]


def _build_store(conn: BagConnection) -> Any:
    name = normalize_msgtype(conn.msgtype)
    if not conn.msgdef.strip():
        store = get_typestore(Stores.ROS1_NOETIC)
        if name not in store.fielddefs:
            raise BagError(f"topic {conn.topic}: the bag stores no definition for {conn.msgtype}")
        return store
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(get_types_from_msg(conn.msgdef, name))
    except Exception as e:  # noqa: BLE001 - rosbags raises several parser error types
        raise BagError(f"topic {conn.topic}: cannot parse the stored {conn.msgtype} definition ({e})") from None
    md5 = store.generate_msgdef(name)[1]
    if conn.md5sum and md5 != conn.md5sum:
        raise BagError(f"topic {conn.topic}: stored {conn.msgtype} definition hashes to {md5}, bag says {conn.md5sum}")
    return store


def stamp_ns(msg: Any, record_time_ns: int) -> tuple[int, bool]:
    """The message's header stamp in ns, or the bag record time when the stamp is zero.

    Returns:
        ``(time_ns, fell_back)``.
    """
    header = getattr(msg, "header", None)
    if header is None:
        return record_time_ns, True
    t = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return (t, False) if t != 0 else (record_time_ns, True)

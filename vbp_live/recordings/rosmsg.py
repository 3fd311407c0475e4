"""Deserialize ROS1 messages with the definitions stored in the bag itself.

A SteeringReport recorded with dbw_mkz_msgs 1.0.6 and one recorded with 1.0.7 have different
fields under the same name, so each distinct (type, definition) gets its own rosbags
typestore, built from the ``message_definition`` text of the bag's connection record.

Definitions come from the file and are checked before rosbags sees them
(:func:`check_definition`): at most :data:`MAX_DEF_BYTES` of text, :data:`MAX_DEF_FIELDS`
fields, nesting :data:`MAX_DEF_DEPTH` deep, no type that contains itself and no array of a
type that takes no bytes (each would make parsing or deserializing take minutes or gigabytes).
A payload that does not match its definition raises :class:`UndecodableMessage`, for the
reader to skip and count.
"""

from __future__ import annotations

import hashlib
import numbers
import re
import struct
from typing import Any

from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype

from vbp_live.recordings.bagscan import BagConnection, BagError

MAX_DEF_BYTES = 256 * 1024  # real definitions with all their comments are a few KB
MAX_DEF_FIELDS = 2000  # rosbags parses ~2000 fields a second
MAX_DEF_DEPTH = 32  # ROS message types nest a few levels deep
MAX_DEFINITIONS = 100  # distinct definitions one reader builds types for
_DECODE_ERRORS = (SerdeError, struct.error, ValueError, IndexError, KeyError, TypeError, OverflowError)
_SEPARATOR = re.compile(r"^={80}[ \t\r]*$", re.M)
_FIELD_TYPE = re.compile(r"^([^\[\]<]+)(?:<=\d+)?(?:\[(\d*)\])?$")
_SIZES = {"bool": 1, "int8": 1, "uint8": 1, "byte": 1, "char": 1, "int16": 2, "uint16": 2, "int32": 4,
          "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8, "time": 8, "duration": 8, "string": 4}


class DefinitionError(BagError):
    """A message definition stored in a bag that cannot or may not be used."""


class UndecodableMessage(BagError):
    """A message whose payload does not match its definition (skip it and count it)."""


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
                if len(self._stores) >= MAX_DEFINITIONS:
                    raise DefinitionError(f"topic {conn.topic}: more than {MAX_DEFINITIONS} different message "
                                          "definitions in these bags; refused")
                self._stores[key] = _build_store(conn)
            hit = self._by_conn[conn] = (self._stores[key], normalize_msgtype(conn.msgtype))
        return hit

    def deserialize(self, conn: BagConnection, raw: bytes | memoryview) -> Any:
        """Deserialize one raw ROS1 message of ``conn``.

        Raises:
            UndecodableMessage: the payload does not match the definition.
            DefinitionError: the definition itself is unusable (every message of ``conn`` would fail).
        """
        store, name = self._resolve(conn)
        try:
            return store.deserialize_ros1(raw, name)
        except _DECODE_ERRORS as e:
            why = " ".join(str(e).split())[:200]
            raise UndecodableMessage(f"topic {conn.topic}: {len(raw)}-byte message does not match its "
                                     f"{conn.msgtype} definition ({why})") from None

    def field_names(self, conn: BagConnection) -> list[str]:
        """Top-level field names of the connection's message type."""
        return [name for name, _ in self.store(conn).fielddefs[normalize_msgtype(conn.msgtype)][1]]


def _build_store(conn: BagConnection) -> Any:
    name = normalize_msgtype(conn.msgtype)
    if not conn.msgdef.strip():
        store = get_typestore(Stores.ROS1_NOETIC)
        if name not in store.fielddefs:
            raise DefinitionError(f"topic {conn.topic}: the bag stores no definition for {conn.msgtype}")
        return store
    try:
        check_definition(conn.msgdef, conn.msgtype)
    except DefinitionError as e:
        raise DefinitionError(f"topic {conn.topic}: the stored {conn.msgtype} definition {e}; refused") from None
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(get_types_from_msg(conn.msgdef, name))
        md5 = store.generate_msgdef(name)[1]
    except Exception as e:  # noqa: BLE001 - rosbags raises several parser error types
        why = " ".join(str(e).split())[:200]
        raise DefinitionError(f"topic {conn.topic}: cannot parse the stored {conn.msgtype} definition "
                              f"({why})") from None
    if conn.md5sum and md5 != conn.md5sum:
        raise DefinitionError(f"topic {conn.topic}: stored {conn.msgtype} definition hashes to {md5}, "
                              f"bag says {conn.md5sum}")
    return store


def _ros1_name(name: str, owner: str) -> str:
    """A field type as ``pkg/Name`` (``Header`` is ``std_msgs/Header``; bare names are in the owner's package)."""
    if name == "Header":
        return "std_msgs/Header"
    if "/" not in name:
        return f"{owner.split('/')[0]}/{name}"
    return name.replace("/msg/", "/")


def _sections(text: str, msgtype: str) -> dict[str, list[tuple[str, int | None]]]:
    """Type name -> its fields as (type, array length: None scalar, -1 dynamic, N fixed)."""
    out: dict[str, list[tuple[str, int | None]]] = {}
    n_fields = 0
    for i, sec in enumerate(_SEPARATOR.split(text)):
        lines = [ln.split("#", 1)[0].strip() for ln in sec.splitlines()]
        lines = [ln for ln in lines if ln]
        if i == 0:
            owner = msgtype.replace("/msg/", "/")
        elif lines and lines[0].startswith("MSG:"):
            owner, lines = lines[0][4:].strip().replace("/msg/", "/"), lines[1:]
        else:
            continue
        fields: list[tuple[str, int | None]] = []
        for ln in lines:
            m = _FIELD_TYPE.match(ln.split()[0])
            n_fields += 1
            if n_fields > MAX_DEF_FIELDS:
                raise DefinitionError(f"has more than {MAX_DEF_FIELDS} fields")
            if "=" in ln or m is None:  # a constant, or a line rosbags will reject itself
                continue
            base, arr = m.group(1), m.group(2)
            typ = base if base in _SIZES else _ros1_name(base, owner)
            fields.append((typ, None if arr is None else (int(arr) if arr else -1)))
        out.setdefault(owner, fields)
    return out


def check_definition(text: str, msgtype: str) -> None:
    """Refuse a definition that is too large, too deep, recursive, or has arrays of empty types.

    Raises:
        DefinitionError: what is wrong, as the end of a sentence ("is 300000 bytes, over ...").
    """
    if len(text) > MAX_DEF_BYTES:
        raise DefinitionError(f"is {len(text)} bytes, over the {MAX_DEF_BYTES // 1024} KB limit")
    types = _sections(text, msgtype)
    root = msgtype.replace("/msg/", "/")
    sizes: dict[str, int] = {}
    stack: list[tuple[str, int]] = [(root, 0)]
    on_path = {root}
    while stack:
        name, k = stack[-1]
        fields = types.get(name, [])
        if k < len(fields):
            stack[-1] = (name, k + 1)
            child = fields[k][0]
            if child in _SIZES or child in sizes or child not in types:
                continue
            if child in on_path:
                raise DefinitionError(f"is recursive ({child} contains itself)")
            if len(stack) >= MAX_DEF_DEPTH:
                raise DefinitionError(f"nests types more than {MAX_DEF_DEPTH} deep")
            stack.append((child, 0))
            on_path.add(child)
            continue
        stack.pop()
        on_path.discard(name)
        sizes[name] = _min_size(name, fields, sizes)


def _min_size(name: str, fields: list[tuple[str, int | None]], sizes: dict[str, int]) -> int:
    """Fewest bytes a message of type ``name`` takes; an array of a type taking none is refused."""
    total = 0
    for typ, arr in fields:
        elem = _SIZES.get(typ, sizes.get(typ, 1))
        if arr is not None and elem == 0:
            raise DefinitionError(f"has an array of {typ}, a type that takes no bytes (in {name})")
        total += 4 if arr == -1 else elem * (1 if arr is None else arr)
    return total


def stamp_ns(msg: Any, record_time_ns: int) -> tuple[int, bool]:
    """The message's header stamp in ns, or the bag record time when the stamp is zero or absent.

    Returns:
        ``(time_ns, fell_back)``.
    """
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    sec, nsec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
    if not isinstance(sec, numbers.Integral) or not isinstance(nsec, numbers.Integral):
        return record_time_ns, True
    t = int(sec) * 1_000_000_000 + int(nsec)
    return (t, False) if t != 0 else (record_time_ns, True)

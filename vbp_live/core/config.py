"""The one typed configuration loader: YAML files and ``--set`` overrides checked against dataclasses.

Every YAML configuration of vbp_live (``configs/prep.yaml``, the training configs, model cards) is
a tree of dataclasses (the *schema*) read through :func:`load`:

* the file is read with PyYAML's safe loader (``yaml.SafeLoader``, never the unsafe one) and the
  line of every key is kept, so a mistake in it is reported as ``configs/x.yaml:12: ...``;
* overrides (``--set KEY=VALUE`` on the command line, see :func:`parse_set`) are applied on top,
  and a mistake in one is reported as ``--set KEY=VALUE: ...``, never blamed on the file;
* the merged tree is checked against the schema: an unknown key fails naming the key, where it
  came from and the known keys; every value follows the one rule below, whether it comes from a
  file, a ``--set`` or a dict (a checkpoint).

The value rule. A ``--set`` value is read like the same text after ``key:`` in a YAML file
(``yaml.safe_load`` of the text after ``=``; an empty text is the empty string). Every value is
then checked against its field's annotation:

* ``bool``: ``true`` or ``false`` (not 0 or 1);
* ``int``: an integer (not a bool, not 2.5);
* ``float``: an integer or a float, or a string written as a decimal number such as ``1e-3``
  (YAML 1.1 reads an exponent without a dot as a string);
* ``str``: a string (quote a value YAML would read as something else: ``"2016"``, ``"null"``);
* ``Literal[...]``: one of the listed values;
* ``X | None``: ``null`` or an X;
* ``list[X]``, ``tuple[X, ...]``: a sequence of X; ``dict[str, X]``: a mapping to X; ``Any``: anything;
* a nested dataclass (a section): a mapping of its keys (missing keys keep their defaults;
  ``null`` or an empty section means all defaults).

Checks that types cannot express (ranges, choices that depend on other keys) live with the
schema: ``__post_init__`` of any dataclass, or a ``validate()`` method of the top-level one, which
:func:`load` calls after building. They raise :class:`ConfigValueError` naming the dotted key, and
the loader adds where that key came from. All errors are :class:`~vbp_live.core.errors.ConfigError`
with one line of text.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from vbp_live.core.errors import ConfigError

T = TypeVar("T")
MAX_VALUES = 100_000  # a config file standing for more values than this (aliases expanded) is refused

SET_HELP = ("override one config key, SECTION.KEY=VALUE (repeatable; the last one wins); VALUE is read as "
            "YAML: 1e-3, true, null, [1, 2], '\"2016\"' for a string of digits")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_PARENT = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")


class ConfigValueError(ConfigError):
    """A value that has the right type but is not allowed (out of range, unknown choice, ...).

    Raised by schema checks (``__post_init__``, ``validate()``); :func:`load` prefixes the message
    with the origin of ``key`` (``file:line`` or ``--set ...``).

    Args:
        key: dotted path of the offending key (``"optim.lr"``) or section (``"crop"``).
        message: the whole one-line message; it should name ``key``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.key, str(self))


@dataclass(frozen=True)
class Override:
    """One dotted key set on top of the file.

    Attributes:
        key: dotted path, e.g. ``"optim.lr"`` (``"model.args.width"`` reaches into a mapping field).
        value: the value, already parsed (see :func:`parse_set`).
        origin: what to name in messages, e.g. ``"--set optim.lr=abc"`` or ``"--min-speed"``.
    """

    key: str
    value: Any
    origin: str


OverridesLike = Mapping[str, Any] | Iterable[str | Override] | None


def parse_set(item: str) -> Override:
    """Parse one ``--set KEY=VALUE`` argument; VALUE is read as YAML (see the module's value rule).

    Raises:
        ConfigError: ``item`` has no ``=``, an empty key part, or a value that is not valid YAML.
    """
    origin = f"--set {item}"
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{origin}: expected KEY=VALUE, e.g. --set optim.lr=0.05")
    if not all(key.split(".")):
        raise ConfigError(f"{origin}: key {key!r} has an empty part")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: the value is not valid YAML ({_yaml_problem(e)})") from None
    return Override(key, value, origin)


def as_overrides(items: OverridesLike) -> list[Override]:
    """Normalize overrides: ``--set`` strings, :class:`Override` objects, or a ``{dotted key: value}`` dict."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        return [Override(str(k), v, f"override {k}={_show(v)}") for k, v in items.items()]
    if isinstance(items, str):
        raise TypeError("overrides must be a list of KEY=VALUE strings, not one string")
    return [item if isinstance(item, Override) else parse_set(item) for item in items]


def load(schema: type[T], path: str | Path | None = None, overrides: OverridesLike = None) -> T:
    """Read ``path`` (optional), apply ``overrides``, and build and check ``schema``.

    Args:
        schema: the top-level dataclass.
        path: YAML file; None means the schema's defaults.
        overrides: ``--set`` strings, :class:`Override` objects or a ``{dotted key: value}`` dict,
            applied in order (a later one wins).

    Returns:
        The built config; ``validate()`` (when the schema has one) has passed.

    Raises:
        ConfigError: one line naming the origin (``file:line``, ``--set ...``), the key and what is wrong.
    """
    data: dict[str, Any] = {}
    origins = _Origins("")
    if path is not None:
        data, lines = read_yaml(path)
        origins = _Origins(str(path), {k: f"{path}:{n}" for k, n in lines.items()})
    for ov in as_overrides(overrides):
        _apply(data, ov, origins)
    return _make(schema, data, origins)


def from_dict(schema: type[T], data: Mapping[str, Any] | None, origin: str = "") -> T:
    """Build and check ``schema`` from plain data (e.g. :func:`to_dict` output stored in a checkpoint).

    Args:
        schema: the top-level dataclass.
        data: nested mapping; missing keys keep their defaults.
        origin: what to name in messages (e.g. the checkpoint file); empty for none.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(_at(origin, f"expected a mapping of config keys, got {_show(data)}"))
    return _make(schema, copy.deepcopy(dict(data or {})), _Origins(origin))


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML-safe data: dataclasses become dicts, tuples become lists."""
    out = _plain(cfg)
    if not isinstance(out, dict):
        raise TypeError(f"to_dict expects a dataclass instance, got {type(cfg).__name__}")
    return out


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two :func:`to_dict` trees (sorted; mappings are descended)."""
    out: list[str] = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping with the safe loader and the line of every key.

    Returns:
        ``(data, lines)``: the mapping (``{}`` for an empty file) and ``{dotted key: 1-based line}``
        (list items as ``key[i]``).

    Raises:
        ConfigError: the file is missing, not valid YAML, or not a mapping at the top level.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a text file ({e.reason})") from None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters first (a NUL byte is a YAMLError here)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}{_yaml_line(e)}: not valid YAML ({_yaml_problem(e)})") from None
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_VALUES:
            raise ConfigError(f"{p}: expands to more than {MAX_VALUES} values (nested aliases?); refused")
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}{_yaml_line(e)}: not valid YAML ({_yaml_problem(e)})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config file") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys at the top level, got {_kind(data)}")
    lines: dict[str, int] = {}
    _key_lines(node, "", lines)
    return data, lines


# -- where each key came from -------------------------------------------------------------------


class _Origins:
    """``{dotted key: origin}`` for messages; a key without an entry inherits its section's origin."""

    def __init__(self, default: str, at: dict[str, str] | None = None) -> None:
        self.default = default
        self.at = dict(at or {})

    def set(self, key: str, origin: str) -> None:
        for k in [k for k in self.at if k == key or k.startswith((key + ".", key + "["))]:
            del self.at[k]
        self.at[key] = origin

    def of(self, key: str) -> str:
        """The origin of ``key``: its own, else its nearest section's, else its newest child's."""
        k = key
        while k:
            if k in self.at:
                return self.at[k]
            k = _parent(k)
        children = [o for c, o in self.at.items() if c.startswith((key + ".", key + "["))] if key else []
        return children[-1] if children else self.default


def _apply(data: dict[str, Any], ov: Override, origins: _Origins) -> None:
    """Set ``ov.key`` in the nested ``data``, creating sections on the way."""
    parts = ov.key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            section = ".".join(parts[: i + 1])
            raise ConfigError(f"{ov.origin}: {section} is a value ({_show(nxt)}), not a section of keys")
        node = nxt
    node[parts[-1]] = copy.deepcopy(ov.value)
    origins.set(ov.key, ov.origin)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once its aliases are expanded (shared nodes counted once each use).

    Linear in the file's size (each distinct node is measured once), so a file of nested aliases
    that would expand to billions of values is caught before anything expands it.
    """
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_VALUES + 1  # a node that contains itself expands without end
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_VALUES + 1)
    return memo[id(node)]


def _key_lines(node: yaml.Node | None, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode):
                key = f"{prefix}.{knode.value}" if prefix else str(knode.value)
                out.setdefault(key, knode.start_mark.line + 1)
                _key_lines(vnode, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out[key] = item.start_mark.line + 1
            _key_lines(item, key, out)


# -- building the dataclasses -------------------------------------------------------------------


def _make(schema: type[T], data: dict[str, Any], origins: _Origins) -> T:
    try:
        cfg = _Builder(origins).section(schema, data, "")
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate()
    except ConfigValueError as e:
        raise ConfigError(_at(origins.of(e.key), str(e))) from None
    return cfg


class _Builder:
    """Turns a nested mapping into the schema's dataclasses, checking keys and types."""

    def __init__(self, origins: _Origins) -> None:
        self.origins = origins

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(_at(self.origins.of(key), message))

    def section(self, cls: type[T], data: Any, key: str) -> T:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.fail(key, f"{key} must be a section (a mapping of keys), got {_show(data)}")
        fields = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        for name in data:
            if name not in fields:
                full = _join(key, name)
                raise self.fail(full, f"unknown key {full!r}; known keys: {', '.join(fields)}")
        required = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise self.fail(key, f"missing key {_join(key, missing[0])!r} (it has no default)")
        hints = typing.get_type_hints(cls)
        kwargs = {name: self.value(hints[name], v, _join(key, name)) for name, v in data.items()}
        return cls(**kwargs)

    def value(self, tp: Any, v: Any, key: str) -> Any:
        if tp is Any:
            return v
        if dataclasses.is_dataclass(tp):
            return self.section(tp, v, key)  # type: ignore[arg-type]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self.union(tp, args, v, key)
        if origin is Literal:
            if any(v == a and type(v) is type(a) for a in args):
                return v
            raise self.fail(key, f"{key} must be {describe(tp)}; got {_show(v)}")
        if tp in (list, tuple) or origin in (list, tuple):
            return self.sequence(tp, origin or tp, args, v, key)
        if tp is dict or origin in (dict, Mapping):
            kt, vt = args or (Any, Any)
            if not isinstance(v, Mapping):
                raise self.fail(key, f"{key} must be {describe(tp)}, got {_show(v)}")
            return {self.value(kt, k, key): self.value(vt, x, _join(key, str(k))) for k, x in v.items()}
        if tp in (bool, int, float, str):
            return self.scalar(tp, v, key)
        raise TypeError(f"config schema: unsupported annotation {tp!r} of {key}")

    def union(self, tp: Any, args: tuple[Any, ...], v: Any, key: str) -> Any:
        if v is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            try:
                return self.value(inner[0], v, key)
            except ConfigError:
                if not _is_leaf(inner[0]):
                    raise
        else:
            for a in inner:
                try:
                    return self.value(a, v, key)
                except ConfigError:
                    pass
        raise self.fail(key, f"{key} must be {describe(tp)}, got {_show(v)}")

    def sequence(self, tp: Any, kind: type, args: tuple[Any, ...], v: Any, key: str) -> Any:
        if not isinstance(v, (list, tuple)):
            raise self.fail(key, f"{key} must be {describe(tp)}, got {_show(v)}")
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(v) != len(args):
                raise self.fail(key, f"{key} must be {describe(tp)}, got {_show(v)}")
            return tuple(self.value(a, x, f"{key}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True)))
        item = args[0] if args else Any
        items = [self.value(item, x, f"{key}[{i}]") for i, x in enumerate(v)]
        return tuple(items) if kind is tuple else items

    def scalar(self, tp: type, v: Any, key: str) -> Any:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if tp is float and number:
            return float(v)
        if tp is float and isinstance(v, str) and _FLOAT.fullmatch(v.strip()):
            return float(v)
        if (tp is int and isinstance(v, int) and not isinstance(v, bool)) or (tp in (bool, str) and isinstance(v, tp)):
            return v
        raise self.fail(key, f"{key} must be {describe(tp)}, got {_show(v)}")


def describe(tp: Any) -> str:
    """What a value of annotation ``tp`` must look like, for messages (``"a float or null"``)."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "a section (a mapping of keys)"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in args if a is not type(None)]
        return " or ".join(inner + (["null"] if type(None) in args else []))
    if origin is Literal:
        return "one of " + ", ".join(a if isinstance(a, str) else _show(a) for a in args)
    if tp in (list, tuple) or origin in (list, tuple):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values"
        return "a list"
    if tp is dict or origin in (dict, Mapping):
        return "a mapping"
    return str(tp).replace("typing.", "")


# -- small helpers ------------------------------------------------------------------------------


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _is_leaf(tp: Any) -> bool:
    return tp in (bool, int, float, str) or typing.get_origin(tp) is Literal


def _parent(key: str) -> str:
    """``"a.b[2]"`` -> ``"a.b"`` -> ``"a"`` -> ``""``."""
    parent = _PARENT.sub("", key)
    return "" if parent == key else parent


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _at(origin: str, message: str) -> str:
    return f"{origin}: {message}" if origin else message


def _show(v: Any, limit: int = 60) -> str:
    """A value as the user wrote it (YAML spelling for null and booleans), shortened."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(v: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(v), type(v).__name__)


def _yaml_line(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f":{mark.line + 1}" if mark is not None else ""


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None)
    return " ".join(str(problem or e).split())

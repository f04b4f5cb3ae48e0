"""Strict YAML reading: one loader that refuses duplicated keys, anchors/aliases and non-UTF-8 bytes.

PyYAML's ``safe_load`` silently keeps the last of two equal mapping keys (a second ``margin:``
overrides the first without a word), expands aliases without bound (a 901-byte "billion laughs"
document exhausts memory after half a minute) and raises a bare :class:`UnicodeDecodeError`
that names no file. Every file softlab reads as configuration (parameter sets, the
pre-registration) goes through :func:`load_yaml` instead, which refuses all three with a
one-line :class:`YamlError` naming the file and, where known, the line::

    claims file params/claims.yml, line 31: duplicated key 'margin' (first on line 29)
    claims file params/claims.yml, line 40: YAML anchors and aliases are not allowed ('&claim1'); write the value out
    claims file params/claims.yml, line 3: not UTF-8 (byte 0xff at offset 57)

Anchors are refused outright, not merely bounded: a configuration file is read by people, and a
value defined once and reused elsewhere hides what each entry says. This module imports only
PyYAML, so any layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node

__all__ = ["YamlError", "load_yaml"]


class YamlError(ValueError):
    """A configuration file that is not strict YAML (one line: file, line, what is wrong)."""


_WRITE_OUT = "write the value out"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and duplicated mapping keys at any depth."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line if event.start_mark is not None else 0
        if isinstance(event, AliasEvent):
            raise _Refused(line, f"YAML aliases are not allowed ('*{event.anchor}'); {_WRITE_OUT}")
        if isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.anchor is not None:
            raise _Refused(line, f"YAML anchors are not allowed ('&{event.anchor}'); {_WRITE_OUT}")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(key_node.start_mark.line, "YAML merge keys ('<<') are not allowed; write the keys out")
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise _Refused(key_node.start_mark.line, f"a mapping key must be a plain value, got {key!r}") from None
            if first is not None:
                raise _Refused(key_node.start_mark.line, f"duplicated key {key!r} (first on line {first + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    """Internal: a strictness rule broken at a 0-based line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _where(what: str, name: str, line: int | None) -> str:
    return f"{what} {name}" + (f", line {line + 1}" if line is not None else "")


def _decode(data: bytes, what: str, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start)
        raise YamlError(
            f"{_where(what, name, line)}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_yaml(source: str | bytes | Path, *, what: str, name: str | None = None) -> Any:
    """Parse one strict YAML document; a :class:`Path` is read as a file, ``str``/``bytes`` as the text itself.

    ``what`` says what the document is ("claims file", "parameter set", "--set value") and starts
    every error message, followed by ``name`` (default: the path, or ``<text>``) and the line.
    Refused, each with a :class:`YamlError`: unreadable files, bytes that are not UTF-8,
    anchors, aliases and merge keys, duplicated mapping keys at any depth, unhashable keys, and
    anything PyYAML itself rejects. An empty document is ``None``.
    """
    if isinstance(source, Path):
        label = name or str(source)
        try:
            raw = source.read_bytes()
        except FileNotFoundError:
            raise YamlError(f"{what} {label}: no such file") from None
        except OSError as exc:
            raise YamlError(f"{what} {label}: cannot read ({exc.strerror or exc})") from None
        text = _decode(raw, what, label)
    elif isinstance(source, bytes):
        label = name or "<text>"
        text = _decode(source, what, label)
    else:
        label = name or "<text>"
        text = source
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # the reader already refuses control characters here
        return loader.get_single_data()
    except _Refused as exc:
        raise YamlError(f"{_where(what, label, exc.line)}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc).splitlines()[0]
        raise YamlError(f"{_where(what, label, mark.line if mark else None)}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise YamlError(f"{_where(what, label, None)}: invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()

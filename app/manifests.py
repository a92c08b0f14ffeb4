"""Manifest streams for the offline CLI: multi-document YAML, JSON, `List`, KRM `ResourceList`.

Everything is parsed before anything is written, so a bad document never leaves half an output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

try:  # the C loader is ~10x faster on big renders; fall back when libyaml is absent
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

KRM_API_VERSION = "config.kubernetes.io/v1"


class StreamKind(StrEnum):
    DOCUMENTS = "documents"  # a YAML stream, one object per document
    LIST = "list"  # a single `kind: List` (or `*List`) with items
    RESOURCE_LIST = "resource_list"  # a KRM function input


class UnreadableInput(ValueError):
    """The input cannot be read as Kubernetes objects; the message says which document and why."""


@dataclass
class ManifestStream:
    kind: StreamKind
    as_json: bool
    objects: list[dict[str, Any]]
    envelope: dict[str, Any] | None = None  # the List / ResourceList around `objects`


def _check_object(doc: object, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise UnreadableInput(f"{where} is a {type(doc).__name__}, expected a Kubernetes object (a mapping)")
    if not isinstance(doc.get("kind"), str) or not isinstance(doc.get("apiVersion"), str):
        raise UnreadableInput(f"{where} has no string `apiVersion` and `kind`")
    return doc


def _items_of(envelope: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = envelope.get("items") or []
    if not isinstance(items, list):
        raise UnreadableInput(f"{where}: `items` must be a list")
    return [_check_object(item, f"{where} item {index + 1}") for index, item in enumerate(items)]


def parse_stream(text: str) -> ManifestStream:
    stripped = text.lstrip()
    as_json = stripped.startswith(("{", "["))
    if as_json:
        try:
            docs: list[object] = [json.loads(text)]
        except json.JSONDecodeError as error:
            raise UnreadableInput(f"document 1: invalid JSON at line {error.lineno}: {error.msg}") from error
    else:
        docs = []
        loader = _Loader(text)
        try:
            while loader.check_data():  # type: ignore[no-untyped-call]
                docs.append(loader.get_data())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error)
            raise UnreadableInput(f"document {len(docs) + 1}{line}: invalid YAML: {problem}") from error
        finally:
            loader.dispose()
        docs = [doc for doc in docs if doc is not None]
    if len(docs) == 1 and isinstance(docs[0], list):  # a JSON array of objects
        docs = list(docs[0])
    if len(docs) == 1 and isinstance(docs[0], dict):
        only = docs[0]
        if only.get("kind") == "ResourceList":
            return ManifestStream(StreamKind.RESOURCE_LIST, as_json, _items_of(only, "ResourceList"), only)
        if isinstance(only.get("kind"), str) and only["kind"].endswith("List") and "items" in only:
            return ManifestStream(StreamKind.LIST, as_json, _items_of(only, only["kind"]), only)
    objects = [_check_object(doc, f"document {index + 1}") for index, doc in enumerate(docs)]
    return ManifestStream(StreamKind.DOCUMENTS, as_json, objects)


class _BlockStyleDumper(_Dumper):
    """Multi-line strings (scripts) as `|` blocks, so output and golden files stay readable; no YAML
    anchors for subtrees the engine shares between input and output."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: _BlockStyleDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def dump_yaml(doc: object) -> str:
    return yaml.dump(doc, Dumper=_BlockStyleDumper, sort_keys=False, default_flow_style=False, width=1 << 16)


def render_stream(
    stream: ManifestStream, objects: list[dict[str, Any]], results: list[dict[str, Any]]
) -> str:
    """Answer in kind: same envelope, same format; a ResourceList also carries the KRM `results`."""
    if stream.kind is StreamKind.DOCUMENTS:
        if stream.as_json:
            payload: object = objects[0] if len(objects) == 1 else objects
            return json.dumps(payload, indent=2) + "\n"
        return "".join("---\n" + dump_yaml(obj) for obj in objects)
    envelope = dict(stream.envelope or {})
    envelope["items"] = objects
    if stream.kind is StreamKind.RESOURCE_LIST:
        envelope["results"] = results
    if stream.as_json:
        return json.dumps(envelope, indent=2) + "\n"
    return dump_yaml(envelope)

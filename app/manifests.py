"""Manifest streams for the offline CLI: multi-document YAML, JSON, `List`, KRM `ResourceList`.

Everything is parsed before anything is written, so a bad document never leaves half an output. YAML is
answered as it was written: a document the engine leaves alone comes out byte for byte (comments, quoting,
key order, separators), and what the engine adds is written into the document's own text (`splice`), so a
GitOps diff shows only the additions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
class Document:
    """One YAML document as written (its `---` line and comments included) and what it holds."""

    text: str
    content: object  # None for a document of only comments or separators


@dataclass
class ManifestStream:
    kind: StreamKind
    as_json: bool
    objects: list[dict[str, Any]]
    envelope: dict[str, Any] | None = None  # the List / ResourceList around `objects`
    documents: list[Document] = field(default_factory=list)  # YAML input: the text of each document
    json_array: bool = False  # JSON input was an array (answered as an array, even of one object)


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


# A document starts at a `---` line (YAML forbids that line inside any content, block scalars included).
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


def split_documents(text: str) -> list[str]:
    """The documents of a YAML stream as written; joined, they give back `text` exactly."""
    starts = [found.start() for found in _DOCUMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [text[start:end] for start, end in zip(starts, [*starts[1:], len(text)], strict=True)]


def _load_document(text: str, number: int, first_line: int) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {first_line + mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UnreadableInput(f"document {number}{line}: invalid YAML: {problem}") from error


def parse_stream(text: str) -> ManifestStream:
    stripped = text.lstrip()
    as_json = stripped.startswith(("{", "["))
    documents: list[Document] = []
    if as_json:
        try:
            docs: list[object] = [json.loads(text)]
        except json.JSONDecodeError as error:
            raise UnreadableInput(f"document 1: invalid JSON at line {error.lineno}: {error.msg}") from error
        where = ["document 1"]
    else:
        line = 0
        for chunk in split_documents(text):
            documents.append(Document(chunk, _load_document(chunk, len(documents) + 1, line)))
            line += chunk.count("\n")
        # messages number documents as written, comment-only ones included
        numbered = [(n, d.content) for n, d in enumerate(documents, 1) if d.content is not None]
        docs = [content for _, content in numbered]
        where = [f"document {n}" for n, _ in numbered]
    json_array = as_json and isinstance(docs[0], list)
    if json_array:
        docs = list(docs[0])  # type: ignore[call-overload]
        where = [f"item {n}" for n in range(1, len(docs) + 1)]
    if len(docs) == 1 and isinstance(docs[0], dict) and not json_array:
        only = docs[0]
        if only.get("kind") == "ResourceList":
            return ManifestStream(
                StreamKind.RESOURCE_LIST, as_json, _items_of(only, "ResourceList"), only, documents
            )
        if isinstance(only.get("kind"), str) and only["kind"].endswith("List") and "items" in only:
            return ManifestStream(StreamKind.LIST, as_json, _items_of(only, only["kind"]), only, documents)
    objects = [_check_object(doc, name) for doc, name in zip(docs, where, strict=True)]
    return ManifestStream(StreamKind.DOCUMENTS, as_json, objects, None, documents, json_array)


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
    """Answer in kind: same envelope, same format, YAML as it was written; a ResourceList also carries
    the KRM `results`."""
    if stream.kind is StreamKind.DOCUMENTS:
        if stream.as_json:
            payload: object = objects if stream.json_array or len(objects) != 1 else objects[0]
            return json.dumps(payload, indent=2) + "\n"
        answers = iter(objects)
        return "".join(
            document.text if document.content is None else rewrite(document, next(answers))
            for document in stream.documents
        )
    envelope = dict(stream.envelope or {})
    envelope["items"] = objects
    if stream.kind is StreamKind.RESOURCE_LIST:
        envelope["results"] = results
    if stream.as_json:
        return json.dumps(envelope, indent=2) + "\n"
    [document] = [d for d in stream.documents if d.content is not None]
    return rewrite(document, envelope)


# --- writing changes into the document's own text ---------------------------------------------------------


class _IndentedDumper(yaml.SafeDumper):
    """Sequences indented under their key (`env:\n  - name: x`), as Helm charts write them; scripts as `|`
    blocks. The pure-Python emitter: only it lets the indentation be chosen."""

    def ignore_aliases(self, data: object) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_IndentedDumper.add_representer(str, _represent_str)  # type: ignore[arg-type]


def _block(value: object, indent: int) -> str:
    """`value` as block YAML lines, each indented by `indent` spaces, ending with a newline."""
    text = yaml.dump(value, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return "".join(" " * indent + line + "\n" for line in text.splitlines())


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _after_line(text: str, index: int) -> int:
    """Where the line holding `index` ends (after its newline); at the end when it has none."""
    if index > 0 and text[index - 1] == "\n":
        return index
    end = text.find("\n", index)
    return len(text) if end == -1 else end + 1


class _Unplaceable(Exception):
    """The change is not an addition the splicer can write into the text."""


def _find_value(node: yaml.MappingNode, key: str) -> yaml.Node:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    raise _Unplaceable(key)


def _dash_of(text: str, item: yaml.Node) -> tuple[int, int]:
    """(start of the item's line, column of its `- `); only for an item that begins its own line."""
    start = _line_start(text, item.start_mark.index)
    before = text[start : item.start_mark.index]
    dash = before.rfind("-")
    if dash == -1 or before[:dash].strip():
        raise _Unplaceable("sequence item does not start its line")
    return start, dash


def _edits(text: str, node: yaml.Node, old: object, new: object, out: list[tuple[int, int, str]]) -> None:
    """Text edits that turn `old` (written as `node` in `text`) into `new`; additions only, plus a changed
    scalar in place."""
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(node, yaml.MappingNode):
        if node.flow_style or not node.value or any(key not in new for key in old):
            raise _Unplaceable("mapping")
        added = {key: value for key, value in new.items() if key not in old}
        for key in old:
            _edits(text, _find_value(node, key), old[key], new[key], out)
        if added:
            indent = node.value[0][0].start_mark.column
            at = _after_line(text, node.value[-1][1].end_mark.index)
            out.append(
                (
                    at,
                    at,
                    ("\n" if at == len(text) and not text.endswith("\n") else "") + _block(added, indent),
                )
            )
        return
    if isinstance(old, list) and isinstance(new, list) and isinstance(node, yaml.SequenceNode):
        if node.flow_style or not node.value or len(new) < len(old):
            raise _Unplaceable("sequence")
        i = j = 0
        while j < len(new):
            if i < len(old) and old[i] == new[j]:
                i, j = i + 1, j + 1
            elif len(new) - j > len(old) - i:  # an item inserted before old[i]
                anchor = node.value[min(i, len(old) - 1)]
                start, dash = _dash_of(text, anchor)
                at = start if i < len(old) else _after_line(text, anchor.end_mark.index)
                item = _block([new[j]], dash)
                out.append((at, at, item))
                j += 1
            else:  # the same place holds a changed item
                _edits(text, node.value[i], old[i], new[j], out)
                i, j = i + 1, j + 1
        if i != len(old):
            raise _Unplaceable("sequence")
        return
    if isinstance(node, yaml.ScalarNode) and isinstance(new, (str, int, float, bool)):
        out.append((node.start_mark.index, node.end_mark.index, json.dumps(new)))
        return
    raise _Unplaceable(type(new).__name__)


def splice(text: str, old: object, new: object) -> str | None:
    """`text` (one YAML document holding `old`) with what `new` adds written into it, every other byte
    kept; None when the change cannot be placed that way (the caller then writes the document anew)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # character offsets in every mark
        edits: list[tuple[int, int, str]] = []
        if node is None:
            return None
        _edits(text, node, old, new, edits)
    except (_Unplaceable, yaml.YAMLError):
        return None
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0], reverse=True):
        text = text[:start] + replacement + text[end:]
    try:
        same = yaml.load(text, Loader=_Loader) == new
    except yaml.YAMLError:
        return None
    return text if same else None


def rewrite(document: Document, new: object) -> str:
    """The document's text when unchanged, else with the change spliced in; when it cannot be spliced, the
    document written anew after its leading comments (its `---` and `# Source:` lines)."""
    if new == document.content:
        return document.text
    spliced = splice(document.text, document.content, new)
    if spliced is not None:
        return spliced
    lines = document.text.splitlines(keepends=True)
    head = []
    for line in lines:
        if line.strip() and not line.startswith(("---", "#")):
            break
        head.append(line)
    prefix = "".join(head) or "---\n"
    if not prefix.endswith("\n"):
        prefix += "\n"
    return prefix + dump_yaml(new)

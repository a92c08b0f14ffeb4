"""RFC 6902 patch from the original and the mutated object; managedFields never take part.

The walk skips equal subtrees at C speed (the engine shares unchanged subtrees with its input, so most are
the very same objects) and hands only differing lists to jsonpatch, which turns an insertion into one `add`
instead of rewriting the array. A 1 MiB object with a small change diffs in milliseconds.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

_SKIPPED = {("metadata", "managedFields")}


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _diff(path: tuple[str, ...], before: Any, after: Any, operations: list[dict[str, Any]]) -> None:
    if before is after or before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before:
            if key not in after and (*path, key) not in _SKIPPED:
                operations.append({"op": "remove", "path": _pointer((*path, key))})
        for key, value in after.items():
            if (*path, key) in _SKIPPED:
                continue
            if key in before:
                _diff((*path, key), before[key], value, operations)
            else:
                operations.append({"op": "add", "path": _pointer((*path, key)), "value": value})
        return
    if isinstance(before, list) and isinstance(after, list):
        prefix = _pointer(path)
        for operation in jsonpatch.make_patch(before, after).patch:
            operations.append(
                {
                    **operation,
                    "path": prefix + operation["path"],
                    **({"from": prefix + operation["from"]} if "from" in operation else {}),
                }
            )
        return
    operations.append({"op": "replace", "path": _pointer(path), "value": after})


def make_patch(original: dict[str, Any], mutated: dict[str, Any]) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    _diff((), original, mutated, operations)
    return operations

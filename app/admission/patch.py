"""RFC 6902 patch from the original and the mutated object; managedFields never take part."""

from __future__ import annotations

from typing import Any

import jsonpatch


def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}


def make_patch(original: dict[str, Any], mutated: dict[str, Any]) -> list[dict[str, Any]]:
    operations = jsonpatch.make_patch(
        _without_managed_fields(original), _without_managed_fields(mutated)
    ).patch
    return list(operations)

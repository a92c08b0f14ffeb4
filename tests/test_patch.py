"""The patch builder: applying its patch to the original gives the mutated object (managedFields aside)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.patch import make_patch

KEYS = st.sampled_from(["a", "b", "c/d", "e~f", "metadata", "managedFields", "spec"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25,
)


def without_managed_fields(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    return obj


@settings(max_examples=500, deadline=None)
@given(before=st.dictionaries(KEYS, JSON, max_size=5), after=st.dictionaries(KEYS, JSON, max_size=5))
def test_patch_turns_before_into_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    patch = make_patch(before, after)
    result = jsonpatch.apply_patch(copy.deepcopy(before), patch)
    assert without_managed_fields(result) == without_managed_fields(after)
    assert not any(op["path"].startswith("/metadata/managedFields") for op in patch)


def test_no_change_no_operations() -> None:
    obj = {"metadata": {"name": "x"}, "spec": {"l": [1, 2]}}
    assert make_patch(obj, copy.deepcopy(obj)) == []


def test_insertion_into_a_list_is_one_add() -> None:
    before = {"spec": {"initContainers": [{"name": "a"}, {"name": "wait"}]}}
    after = {"spec": {"initContainers": [{"name": "a"}, {"name": "step"}, {"name": "wait"}]}}
    assert make_patch(before, after) == [
        {"op": "add", "path": "/spec/initContainers/1", "value": {"name": "step"}}
    ]

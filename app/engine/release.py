"""What the engine may know about the rest of a release: which of its objects already migrate the database
without a Helm or Argo CD hook.

Such a release does not deadlock under Argo CD (its migrator runs beside the workloads, not after them), so
a migrate step would only be a second migrator racing the chart's own. Only a front end that sees the whole
release can know: the offline `mutate` (the stream it reads) and `reconcile` (the namespace it lists) build a
`Release` and pass it to `mutate`; the webhook sees one object at a time and passes none.

A release is the objects of one namespace (none in a `helm template` stream: ""), one flavour and one value of
the flavour's release label (`release`, `app.kubernetes.io/instance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from app.engine.jobs import is_hook, is_migration_job
from app.engine.objects import InvalidObject, JsonObject, PodView, pod_view, string_map, target_of
from app.engine.recognise import Recognition, own_migrator, recognise

ReleaseKey = tuple[str, str, str]  # (namespace, profile, release label value)


def release_key(obj: JsonObject, view: PodView, recognition: Recognition) -> ReleaseKey:
    metadata = obj.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    label = recognition.profile.release_label
    return (
        namespace if isinstance(namespace, str) else "",
        recognition.profile.name,
        view.labels.get(label, "") if label else "",
    )


@dataclass(frozen=True)
class Release:
    """The hookless migrators of the releases a front end saw: release -> what migrates there."""

    migrators: Mapping[ReleaseKey, str] = field(default_factory=lambda: MappingProxyType({}))

    def migrator(self, key: ReleaseKey) -> str | None:
        return self.migrators.get(key)


def _hookless_migrator(obj: object) -> tuple[ReleaseKey, str] | None:
    target = target_of(obj)
    if target is None:
        return None
    assert isinstance(obj, dict)
    kind, template_path = target
    view = pod_view(obj, kind, template_path)
    recognition = recognise(view)
    if recognition is None:
        return None
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    what = f"{kind} {name if isinstance(name, str) else '?'}"
    if kind == "Job":
        if not is_migration_job(view, recognition) or is_hook(string_map(obj, ("metadata", "annotations"))):
            return None
        return release_key(obj, view, recognition), f"{what} is a migration Job without a hook"
    how = own_migrator(recognition)
    return None if how is None else (release_key(obj, view, recognition), f"{what} {how}")


def release_of(objects: Iterable[object]) -> Release:
    """The hookless migrators among `objects` (a whole render, or a namespace's workloads). Never raises:
    a malformed object migrates nothing (the engine reports it as `invalid_object` on its own)."""
    found: dict[ReleaseKey, str] = {}
    for obj in objects:
        try:
            migrator = _hookless_migrator(obj)
        except InvalidObject:
            continue
        if migrator is not None:
            found.setdefault(*migrator)
    return Release(MappingProxyType(found))

"""Reconcile: run existing Deployments and StatefulSets of opted-in namespaces through the engine and patch
what it adds, for releases that deadlocked before the namespace was labelled (or while the webhook was down:
Argo CD sends no UPDATE for manifests that did not change).

The patch is the diff of the live object and the engine's result (only additions) behind a JSON-patch `test`
of `metadata.resourceVersion`, so a concurrent change is never overwritten: the API server refuses the patch,
and the object is read again and retried. Jobs and Pods are never listed, let alone touched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from app.config import NamespaceLabel
from app.engine import EngineConfig, Outcome, Release, mutate, release_of
from app.patch import make_patch

log = logging.getLogger("airflow_migration_webhook.reconcile")
MAX_CONFLICT_RETRIES = 5

# Every API call reconcile makes, as RBAC sees it: (API group, resource) -> verbs. The chart's reconcile
# ClusterRole grants exactly this (tests/test_chart.py compares the two both ways).
CLUSTER_ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("", "namespaces"): frozenset({"get", "list"}),  # check_opted_in, opted_in_namespaces
    ("apps", "deployments"): frozenset({"list", "get", "patch"}),  # list, re-read on conflict, patch
    ("apps", "statefulsets"): frozenset({"list", "get", "patch"}),
}


class NotOptedIn(ValueError):
    """The namespace does not carry the opt-in label."""


class Result(StrEnum):
    """What reconcile did to one object: the engine's outcome, applied (or not) to the live object."""

    PATCHED = "patched"  # engine outcome mutated, patch applied
    WOULD_PATCH = "would_patch"  # engine outcome mutated, --dry-run
    UNCHANGED = "unchanged"  # engine outcome unchanged
    SKIPPED = "skipped"  # engine outcome skipped
    FAILED = "failed"  # engine outcome error, or the API refused the read or the patch


_RESULT_OF = {
    Outcome.UNCHANGED: Result.UNCHANGED,
    Outcome.SKIPPED: Result.SKIPPED,
    Outcome.ERROR: Result.FAILED,
}
API_ERROR = "api_error"  # the reason of a FAILED result that the API server caused, beside the engine's codes


@dataclass(frozen=True)
class ObjectResult:
    namespace: str
    kind: str
    name: str
    result: Result
    reason: str  # the engine's reason code, or api_error
    retries: int = 0
    warnings: list[str] = field(default_factory=list)
    patch: list[dict[str, Any]] = field(default_factory=list)
    detail: str | None = None  # the engine's detail: e.g. which object of the release migrates without a hook


class Reconciler:
    def __init__(self, api: k8s.ApiClient, engine: EngineConfig, label: NamespaceLabel) -> None:
        self.core = k8s.CoreV1Api(api)
        apps = k8s.AppsV1Api(api)
        # kind -> (list, read, patch) of the apps/v1 API
        self._calls: dict[str, tuple[Any, Any, Any]] = {
            "Deployment": (
                apps.list_namespaced_deployment,
                apps.read_namespaced_deployment,
                apps.patch_namespaced_deployment,
            ),
            "StatefulSet": (
                apps.list_namespaced_stateful_set,
                apps.read_namespaced_stateful_set,
                apps.patch_namespaced_stateful_set,
            ),
        }
        self.engine = engine
        self.label = label

    # --- reading (raw JSON, exactly as the API server stores it) ---------------------------------------

    def _json(self, response: Any) -> Any:
        return json.loads(response.data)

    def opted_in_namespaces(self) -> list[str]:
        listing = self._json(
            self.core.list_namespace(label_selector=self.label.selector, _preload_content=False)
        )
        return sorted(item["metadata"]["name"] for item in listing["items"])

    def check_opted_in(self, namespace: str) -> None:
        labels = self._json(self.core.read_namespace(namespace, _preload_content=False))["metadata"].get(
            "labels"
        )
        if (labels or {}).get(self.label.key) != self.label.value:
            raise NotOptedIn(f"namespace {namespace} does not carry {self.label.selector}")

    def workloads(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        items = self._json(self._calls[kind][0](namespace, _preload_content=False))["items"]
        return [{"apiVersion": "apps/v1", "kind": kind, **item} for item in items]

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            **self._json(self._calls[kind][1](name, namespace, _preload_content=False)),
        }

    def _patch(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._calls[kind][2](name, namespace, operations)

    # --- one object ------------------------------------------------------------------------------------

    def reconcile_object(
        self, live: dict[str, Any], dry_run: bool, release: Release | None = None
    ) -> ObjectResult:
        """Engine, diff, guarded patch; on a conflict read the object again and start over. `release`: the
        hookless migrators of the namespace (`release_of` its workloads)."""
        metadata = live["metadata"]
        kind, namespace, name = live["kind"], metadata["namespace"], metadata["name"]
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            result = mutate(live, "UPDATE", self.engine, release)
            decision = result.decision
            base = ObjectResult(
                namespace,
                kind,
                name,
                _RESULT_OF.get(decision.outcome, Result.FAILED),
                decision.reason.value,
                attempt,
                list(decision.warnings),
                detail=decision.detail,
            )
            if not result.changed:
                return base
            patch = make_patch(live, result.object)
            if dry_run:
                return replace(base, result=Result.WOULD_PATCH, patch=patch)
            test = {"op": "test", "path": "/metadata/resourceVersion", "value": metadata["resourceVersion"]}
            try:
                self._patch(kind, namespace, name, [test, *patch])
            except ApiException as error:
                if error.status not in (409, 422) or attempt == MAX_CONFLICT_RETRIES:
                    refused = f"patch refused: {error.status} {error.reason}"
                    return replace(
                        base, result=Result.FAILED, patch=patch, warnings=[*base.warnings, refused]
                    )
                log.info(
                    "object changed concurrently; reading it again",
                    extra={"fields": {"kind": kind, "namespace": namespace, "name": name}},
                )
                live = self._read(kind, namespace, name)
                metadata = live["metadata"]
                continue
            return replace(base, result=Result.PATCHED, patch=patch)
        raise AssertionError("unreachable")

    def _guarded(self, live: dict[str, Any], dry_run: bool, release: Release | None = None) -> ObjectResult:
        """One object's result; an API error is that object's failure, never the round's."""
        try:
            return self.reconcile_object(live, dry_run, release)
        except ApiException as error:
            metadata = live["metadata"]
            return ObjectResult(
                metadata["namespace"],
                live["kind"],
                metadata["name"],
                Result.FAILED,
                API_ERROR,
                warnings=[f"{error.status} {error.reason}"],
            )

    def _listings(self, namespace: str) -> list[tuple[str, list[dict[str, Any]] | ObjectResult]]:
        """Every kind's workloads in the namespace, or the failure of its list call."""
        listings: list[tuple[str, list[dict[str, Any]] | ObjectResult]] = []
        for kind in self._calls:
            try:
                listings.append((kind, self.workloads(kind, namespace)))
            except ApiException as error:
                # the round goes on with the other kinds and namespaces
                failed = ObjectResult(
                    namespace, kind, "*", Result.FAILED, API_ERROR, warnings=[f"list refused: {error.status}"]
                )
                listings.append((kind, failed))
        return listings

    def run(self, namespaces: list[str], dry_run: bool) -> Iterator[ObjectResult]:
        for namespace in namespaces:
            listings = self._listings(namespace)
            # the namespace's workloads are its releases (as far as reconcile sees: it lists no Jobs)
            release = release_of(
                live for _, listing in listings if isinstance(listing, list) for live in listing
            )
            for _, listing in listings:
                if isinstance(listing, ObjectResult):
                    log.warning("reconcile", extra={"fields": _fields(listing)})
                    yield listing
                    continue
                for live in listing:
                    done = self._guarded(live, dry_run, release)
                    level = logging.WARNING if done.result is Result.FAILED else logging.INFO
                    log.log(level, "reconcile", extra={"fields": _fields(done)})
                    yield done


def _fields(done: ObjectResult) -> dict[str, Any]:
    return {k: v for k, v in asdict(done).items() if k != "patch"}


def table(results: list[ObjectResult]) -> str:
    rows = [("NAMESPACE", "KIND", "NAME", "RESULT", "REASON")]
    rows += [(o.namespace, o.kind, o.name, o.result.value, o.reason) for o in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return (
        "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )
        + "\n"
    )

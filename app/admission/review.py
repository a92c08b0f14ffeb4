"""AdmissionReview admission.k8s.io/v1 and v1beta1: typed request view and one pure response builder."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

SUPPORTED_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer; the message is one line for the client."""


@dataclass(frozen=True)
class ReviewRequest:
    api_version: str
    uid: str
    operation: str
    kind: str
    namespace: str
    name: str
    dry_run: bool
    object: Any


def parse_review(body: bytes) -> ReviewRequest:
    try:
        review = orjson.loads(body)  # a C parser: 4-5x the standard library's speed on review bodies
    except orjson.JSONDecodeError as error:
        raise BadReview(f"malformed JSON: {error}") from None
    if not isinstance(review, dict):
        raise BadReview("the body must be a JSON object (an AdmissionReview)")
    api_version = review.get("apiVersion")
    if api_version not in SUPPORTED_VERSIONS:
        raise BadReview(f"apiVersion must be one of {', '.join(SUPPORTED_VERSIONS)}, got {api_version!r}")
    if review.get("kind") != "AdmissionReview":
        raise BadReview(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("the AdmissionReview request has no uid")
    raw_kind = request.get("kind")
    kind: dict[str, Any] = raw_kind if isinstance(raw_kind, dict) else {}
    obj = request.get("object")
    raw_metadata = obj.get("metadata") if isinstance(obj, dict) else None
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    return ReviewRequest(
        api_version=api_version,
        uid=uid,
        operation=str(request.get("operation") or ""),
        kind=str(kind.get("kind") or (obj.get("kind") if isinstance(obj, dict) else "") or ""),
        namespace=str(request.get("namespace") or metadata.get("namespace") or ""),
        name=str(request.get("name") or metadata.get("name") or metadata.get("generateName") or ""),
        dry_run=bool(request.get("dryRun")),
        object=obj,
    )


def build_response(
    api_version: str, uid: str, patch: list[dict[str, Any]] | None, warnings: list[str]
) -> dict[str, Any]:
    """Always `allowed: true`: this webhook mutates, it never blocks a deployment."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}

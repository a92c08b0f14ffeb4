"""The real server process over real TLS: AdmissionReview in, AdmissionReview out."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import jsonpatch
import pytest
import yaml

from app.engine import EngineConfig, mutate
from app.manifests import dump_yaml
from tests.servers import WebhookProcess, start_webhook
from tests.support import ADMISSION_FIXTURES, CHART_RENDERS, cli_mutate

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    handle = start_webhook(tmp_path_factory.mktemp("webhook"))
    yield handle
    assert handle.stop() == 0


@pytest.fixture(scope="module")
def client(webhook: WebhookProcess) -> Iterator[httpx.Client]:
    with webhook.client() as session:
        yield session


def review(
    obj: dict[str, Any],
    operation: str = "CREATE",
    version: str = "admission.k8s.io/v1",
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    return {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "operation": operation,
            "dryRun": dry_run,
            "kind": {"group": "", "version": "", "kind": obj.get("kind")},
            "namespace": metadata.get("namespace", "airflow"),
            "name": metadata.get("name"),
            "object": obj,
            "oldObject": old,
        },
    }


def answer_of(
    client: httpx.Client, url: str, body: dict[str, Any], query: str = "?timeout=5s"
) -> dict[str, Any]:
    response = client.post(url + query, content=json.dumps(body), headers=HEADERS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["apiVersion"] == body["apiVersion"]
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert answer["response"]["allowed"] is True
    return answer


def patched(obj: dict[str, Any], answer: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    encoded = answer["response"].get("patch")
    if encoded is None:
        assert "patchType" not in answer["response"]
        return obj, []
    assert answer["response"]["patchType"] == "JSONPatch"
    operations = json.loads(base64.b64decode(encoded))
    assert not any("managedFields" in op["path"] for op in operations)
    return jsonpatch.apply_patch(copy.deepcopy(obj), operations), operations


# --- what a real kube-apiserver sent --------------------------------------------------------------

EXPECTED_REAL = {
    # file: (patched?, what the patch must do)
    "bitnami-24.1.0-scheduler-create.json": True,
    "bitnami-24.1.0-web-create.json": True,
    "bitnami-24.1.0-triggerer-create.json": False,
    "bitnami-24.1.0-postgresql-create.json": False,
    "bitnami-24.1.0-setup-db-job-create.json": True,
    "bitnami-24.1.0-setup-db-job-update-add-finalizer.json": False,
    "bitnami-24.1.0-setup-db-job-update-remove-finalizer.json": False,
    "bitnami-24.1.0-scheduler-update-image.json": True,
    "bitnami-24.1.0-web-update-dryrun.json": True,
    "bitnami-24.1.0-worker-update-server-side-apply.json": False,
    "apache-1.18.0-argocd-tracked-api-server-create.json": True,
    "apache-1.18.0-argocd-tracked-scheduler-create.json": True,
    "apache-1.18.0-argocd-tracked-migrations-job-create.json": True,
}


def test_every_real_review_is_covered() -> None:
    assert {p.name for p in ADMISSION_FIXTURES.glob("*.json")} == set(EXPECTED_REAL)


@pytest.mark.parametrize("name", sorted(EXPECTED_REAL))
def test_real_admission_reviews(webhook: WebhookProcess, client: httpx.Client, name: str) -> None:
    body = json.loads((ADMISSION_FIXTURES / name).read_text())
    request = body["request"]
    answer = answer_of(client, webhook.url, body)
    result, operations = patched(request["object"], answer)
    assert bool(operations) is EXPECTED_REAL[name]
    assert result == mutate(request["object"], request["operation"], EngineConfig()).object
    if request["kind"]["kind"] == "Job":
        # a Job's spec is never touched; on UPDATE nothing at all
        assert result["spec"] == request["object"]["spec"]
        if request["operation"] == "UPDATE":
            assert operations == []
    if operations and request["operation"] == "CREATE":
        assert {op["op"] for op in operations} <= {"add", "replace"}
        assert all(op["op"] == "add" or op["path"].startswith("/metadata/annotations/") for op in operations)


def test_image_bump_moves_the_step_to_the_new_image(webhook: WebhookProcess, client: httpx.Client) -> None:
    body = json.loads((ADMISSION_FIXTURES / "bitnami-24.1.0-scheduler-update-image.json").read_text())
    result, _ = patched(body["request"]["object"], answer_of(client, webhook.url, body))
    pod = result["spec"]["template"]["spec"]
    step = next(c for c in pod["initContainers"] if c["name"] == "airflow-db-migrate")
    assert step["image"] == pod["containers"][0]["image"]
    assert step["image"] != body["request"]["oldObject"]["spec"]["template"]["spec"]["containers"][0]["image"]


def test_dry_run_is_answered_like_the_real_request(webhook: WebhookProcess, client: httpx.Client) -> None:
    body = json.loads((ADMISSION_FIXTURES / "bitnami-24.1.0-web-update-dryrun.json").read_text())
    assert body["request"]["dryRun"] is True
    dry = answer_of(client, webhook.url, body)
    real = copy.deepcopy(body)
    real["request"]["dryRun"] = False
    real_answer = answer_of(client, webhook.url, real)
    assert dry["response"]["patch"] == real_answer["response"]["patch"]


def test_warnings_carry_the_reason_code(webhook: WebhookProcess, client: httpx.Client) -> None:
    body = json.loads((ADMISSION_FIXTURES / "bitnami-24.1.0-scheduler-create.json").read_text())
    warnings = answer_of(client, webhook.url, body)["response"]["warnings"]
    assert warnings == ["airflow-migration-webhook: injected: added the airflow-db-migrate init container"]


def community_scheduler() -> dict[str, Any]:
    docs = yaml.safe_load_all((CHART_RENDERS / "community-airflow-8.9.0-defaults.yaml").read_text())
    return next(
        d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )


def test_the_webhook_says_when_it_cannot_tell_whether_a_release_migrates_itself(
    webhook: WebhookProcess, client: httpx.Client
) -> None:
    """The community chart's default is a hookless migrator the webhook cannot see from the scheduler: it adds
    the step and says so; a second pass over its own output says nothing."""
    scheduler = community_scheduler()
    answer = answer_of(client, webhook.url, review(scheduler))
    result, _ = patched(scheduler, answer)
    [decision, cannot_tell] = answer["response"]["warnings"]
    assert decision.startswith("airflow-migration-webhook: injected: ")
    assert cannot_tell.startswith(
        "airflow-migration-webhook: injected: the webhook sees one object at a time and cannot tell"
    )
    again = answer_of(client, webhook.url, review(result, "UPDATE", old=result))
    assert "patch" not in again["response"] and "warnings" not in again["response"]


def test_airflow_1_is_refused_with_a_warning_and_no_patch(
    webhook: WebhookProcess, client: httpx.Client
) -> None:
    scheduler = community_scheduler()
    pod = scheduler["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        container["image"] = "apache/airflow:1.10.15-python3.8"
    answer = answer_of(client, webhook.url, review(scheduler))
    assert "patch" not in answer["response"]
    [warning] = answer["response"]["warnings"]
    assert warning.startswith(
        "airflow-migration-webhook: airflow_version_unsupported: image apache/airflow:1.10.15-python3.8 runs "
        "Airflow 1.10.15"
    )


# --- the chart renders through HTTPS equal the offline CLI ----------------------------------------------


def chart_docs() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted(CHART_RENDERS.glob("*.yaml")):
        for index, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                found.append((path.stem, index, doc))
    return found


@pytest.mark.parametrize(
    ("render", "index", "doc"),
    chart_docs(),
    ids=lambda v: str(v) if not isinstance(v, dict) else v["metadata"]["name"],
)
def test_chart_objects_through_https_equal_the_cli(
    webhook: WebhookProcess, client: httpx.Client, render: str, index: int, doc: dict[str, Any]
) -> None:
    """The same object: byte for byte in JSON (both written from data), equal as data in YAML (which the
    CLI writes in the input's own layout)."""
    result, _ = patched(doc, answer_of(client, webhook.url, review(doc)))
    code, cli_json, _ = cli_mutate(json.dumps(doc))
    assert code == 0
    assert cli_json == json.dumps(result, indent=2) + "\n"
    code, cli_yaml, _ = cli_mutate(dump_yaml(doc))
    assert code == 0
    assert yaml.safe_load(cli_yaml) == result


# --- UPDATE, v1beta1 ---------------------------------------------------------------------------------


def test_v1beta1_is_answered_in_v1beta1(webhook: WebhookProcess, client: httpx.Client) -> None:
    doc = next(d for _, _, d in chart_docs() if d["metadata"]["name"] == "airflow-scheduler")
    answer = answer_of(client, webhook.url, review(doc, version="admission.k8s.io/v1beta1"))
    assert answer["response"]["patchType"] == "JSONPatch"


def test_update_of_own_output_changes_nothing(webhook: WebhookProcess, client: httpx.Client) -> None:
    doc = next(d for _, _, d in chart_docs() if d["metadata"]["name"] == "airflow-api-server")
    first, _ = patched(doc, answer_of(client, webhook.url, review(doc)))
    second = answer_of(client, webhook.url, review(first, "UPDATE", old=first))
    assert "patch" not in second["response"] and "warnings" not in second["response"]


# --- bad requests: clear 4xx, never a crash --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{}", "text/plain", 415, "Content-Type must be application/json"),
        (b"{}", None, 415, "Content-Type must be application/json"),
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"\xff\xfe", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "application/json",
            400,
            "no uid",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "application/json",
            400,
            "no request",
        ),
        (
            b'{"apiVersion": "v1", "kind": "AdmissionReview", "request": {"uid": "x"}}',
            "application/json",
            400,
            "apiVersion must be one of",
        ),
        (b"[" * 100_000, "application/json", 400, "malformed JSON"),
    ],
)
def test_bad_requests(
    webhook: WebhookProcess,
    client: httpx.Client,
    body: bytes,
    content_type: str | None,
    status: int,
    message: str,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(webhook.url, content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in response.text


def test_oversized_body_is_refused_without_reading_it(webhook: WebhookProcess, client: httpx.Client) -> None:
    response = client.post(webhook.url, content=b" " * (8 * 1024 * 1024 + 1), headers=HEADERS)
    assert response.status_code == 413
    assert "exceeds 8388608 bytes" in response.json()["error"]


def test_oversized_chunked_body_is_refused(webhook: WebhookProcess, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(9):
            yield b" " * (1024 * 1024)

    response = client.post(webhook.url, content=chunks(), headers=HEADERS)
    assert response.status_code == 413


def test_a_review_of_a_malformed_object_is_allowed_unchanged(
    webhook: WebhookProcess, client: httpx.Client
) -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": 7}}
    answer = answer_of(client, webhook.url, review(obj))
    assert "patch" not in answer["response"]


def test_health_metrics_and_log_lines(webhook: WebhookProcess, client: httpx.Client) -> None:
    doc = next(d for _, _, d in chart_docs() if d["metadata"]["name"] == "airflow-scheduler")
    body = review(doc)
    answer_of(client, webhook.url, body)
    assert httpx.get(f"{webhook.health}/healthz").text == "ok"
    assert httpx.get(f"{webhook.health}/readyz").status_code == 200
    metrics = httpx.get(f"{webhook.health}/metrics").text
    assert (
        'airflow_migration_webhook_reviews_total{kind="Deployment",operation="CREATE",outcome="mutated",reason="injected"}'
        in metrics
    )
    assert 'airflow_migration_webhook_review_duration_seconds_bucket{le="0.001",outcome="mutated"}' in metrics
    assert "airflow_migration_webhook_certificate_not_after_timestamp_seconds 1." in metrics
    assert 'airflow_migration_webhook_bad_requests_total{status="415"}' in metrics
    lines = [json.loads(line) for line in webhook.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("uid") == body["request"]["uid"]]
    assert len(mine) == 1
    assert mine[0]["msg"] == "review" and mine[0]["outcome"] == "mutated" and mine[0]["reason"] == "injected"
    assert {"kind", "namespace", "name", "operation", "duration_ms"} <= set(mine[0])
    refused = [line for line in lines if line.get("msg") == "bad request"]
    assert {line["status"] for line in refused} >= {400, 415}, "415s are logged like the 400s"
    assert not any(line["msg"].startswith("Started server process") for line in lines), "one line per event"
    starts = [line["msg"] for line in lines if line["msg"].startswith("Uvicorn running")]
    assert sorted(s.split("://")[0] for s in starts) == [
        "Uvicorn running on http",
        "Uvicorn running on https",
    ]


def test_webhook_port_speaks_only_tls_1_2_or_newer(webhook: WebhookProcess) -> None:
    context = webhook.tls_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.0/1.1: the server must refuse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=context) as old_client:
        old_client.post(webhook.url, content=b"{}", headers=HEADERS)
    with pytest.raises(httpx.HTTPError):
        httpx.post(webhook.url.replace("https", "http"), content=b"{}", headers=HEADERS)


def test_openapi_is_published(webhook: WebhookProcess, client: httpx.Client) -> None:
    assert "/mutate" in client.get(webhook.url.replace("/mutate", "/openapi.json")).json()["paths"]


def test_other_methods_and_paths_get_the_frameworks_answers(
    webhook: WebhookProcess, client: httpx.Client
) -> None:
    """POST /mutate is answered in plain ASGI; everything else still goes through FastAPI's routing."""
    assert client.get(webhook.url).status_code == 405
    assert (
        client.post(webhook.url.replace("/mutate", "/mutate/x"), content=b"{}", headers=HEADERS).status_code
        == 404
    )
    answer = client.post(webhook.url + "?timeout=10s&other=1", content=b"{}", headers=HEADERS)
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)

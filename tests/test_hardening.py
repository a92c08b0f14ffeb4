"""Hostile input and faults against the real server process: every answer is a well-formed HTTP response
(an AdmissionReview or a clear 4xx), the process never dies, memory stays bounded, and load that runs
beside a slow-client attack or a flood of oversized bodies is answered correctly."""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import WebhookProcess, start_webhook
from tests.support import ADMISSION_FIXTURES
from tests.test_http import HEADERS
from tests.test_lifecycle import Load

CAP = 2 * 1024 * 1024
TRIED: dict[str, int] = {"requests": 0}


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    handle = start_webhook(tmp_path_factory.mktemp("hardening"), server={"max_body_bytes": CAP})
    yield handle
    assert handle.process.poll() is None, "the server died during the hardening tests"
    assert handle.stop() == 0


@pytest.fixture(scope="module")
def client(webhook: WebhookProcess) -> Iterator[httpx.Client]:
    with webhook.client() as session:
        yield session


def real_reviews() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(ADMISSION_FIXTURES.glob("*.json"))]


REAL = real_reviews()


def rss_mib(pid: int) -> float:
    found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert found
    return int(found.group(1)) / 1024


def check_answer(response: httpx.Response, body: bytes) -> None:
    """Well-formed: a 200 AdmissionReview that allows, whose patch applies; or a 4xx with a one-line error."""
    TRIED["requests"] += 1
    assert response.status_code in (200, 400, 413, 415), response.text[:300]
    answer = response.json()
    if response.status_code != 200:
        assert set(answer) == {"error"} and "\n" not in answer["error"] and "Traceback" not in answer["error"]
        return
    sent = json.loads(body)
    assert answer["apiVersion"] == sent["apiVersion"] and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == sent["request"]["uid"] and answer["response"]["allowed"] is True
    if "patch" in answer["response"]:
        operations = json.loads(base64.b64decode(answer["response"]["patch"]))
        jsonpatch.apply_patch(copy.deepcopy(sent["request"]["object"]), operations)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(webhook: WebhookProcess, client: httpx.Client, data: bytes) -> None:
    check_answer(client.post(webhook.url, content=data, headers=HEADERS), data)


@FUZZ
@given(index=st.integers(0, len(REAL) - 1), cut=st.floats(0, 1))
def test_truncated_real_reviews(
    webhook: WebhookProcess, client: httpx.Client, index: int, cut: float
) -> None:
    body = json.dumps(REAL[index]).encode()
    body = body[: int(len(body) * cut)]
    check_answer(client.post(webhook.url, content=body, headers=HEADERS), body)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*prefix, index))


@FUZZ
@given(index=st.integers(0, len(REAL) - 1), pick=st.integers(0, 10**9), value=JSON)
def test_real_reviews_with_a_random_value_anywhere(
    webhook: WebhookProcess, client: httpx.Client, index: int, pick: int, value: Any
) -> None:
    review = copy.deepcopy(REAL[index])
    review["request"]["uid"] = str(uuid.uuid4())
    paths = [p for p in _paths(review["request"]["object"]) if p]
    path = paths[pick % len(paths)]
    target = review["request"]["object"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    body = json.dumps(review).encode()
    check_answer(client.post(webhook.url, content=body, headers=HEADERS), body)


@FUZZ
@given(
    version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1", 7, None, "v1"]),
    operation=st.one_of(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]), JSON),
    kind=JSON,
    obj=JSON,
    uid=st.one_of(st.uuids().map(str), JSON),
)
def test_wrong_types_everywhere(
    webhook: WebhookProcess, client: httpx.Client, version: Any, operation: Any, kind: Any, obj: Any, uid: Any
) -> None:
    body = json.dumps(
        {
            "apiVersion": version,
            "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": operation, "kind": kind, "object": obj},
        }
    ).encode()
    check_answer(client.post(webhook.url, content=body, headers=HEADERS), body)


def test_deep_nesting_huge_strings_and_unicode(webhook: WebhookProcess, client: httpx.Client) -> None:
    base = copy.deepcopy(REAL[0])
    nested: Any = "leaf"
    for _ in range(300):  # as deep as Python's own encoder can write
        nested = {"n": [nested]}
    cases = []
    for value in (nested, "x" * (CAP // 2), "\u202e\U0001f600\x00\ud7ff" * 1000, [[[[[]]]]] * 10_000):
        review = copy.deepcopy(base)
        review["request"]["uid"] = str(uuid.uuid4())
        review["request"]["object"]["metadata"]["annotations"] = {"fuzz": value}
        cases.append(json.dumps(review).encode())
    cases.append(b"[" * 200_000 + b"]" * 200_000)
    cases.append(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    for body in cases:
        check_answer(client.post(webhook.url, content=body, headers=HEADERS), body)


def test_the_server_survived_with_bounded_memory(webhook: WebhookProcess, client: httpx.Client) -> None:
    assert webhook.process.poll() is None
    assert httpx.get(f"{webhook.health}/healthz").text == "ok"
    assert rss_mib(webhook.process.pid) < 200
    assert TRIED["requests"] >= 1500
    print(
        f"\nhardening: {TRIED['requests']} hostile requests answered, server alive, "
        f"RSS {rss_mib(webhook.process.pid):.0f} MiB"
    )


# --- faults while a load runs --------------------------------------------------------------------------


def test_slow_clients_holding_connections_do_not_starve_the_load(webhook: WebhookProcess) -> None:
    context = webhook.tls_context()
    held = []
    try:
        for _ in range(200):
            raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n")
            held.append(tls)  # headers never finished
        with Load(webhook, threads=3) as load:
            time.sleep(3)
        assert load.failures == [] and load.refused == []
        assert load.ok > 30
    finally:
        for sock in held:
            sock.close()


def test_a_flood_of_oversized_bodies_does_not_hurt_the_load(webhook: WebhookProcess) -> None:
    stop = threading.Event()
    refused: list[int] = []
    before = rss_mib(webhook.process.pid)

    def flood() -> None:
        with webhook.client() as flooder:
            while not stop.is_set():
                declared = flooder.post(webhook.url, content=b" " * (CAP + 1), headers=HEADERS)

                def chunks() -> Iterator[bytes]:
                    for _ in range(4):
                        yield b" " * (CAP // 2)

                streamed = flooder.post(webhook.url, content=chunks(), headers=HEADERS)
                refused.extend([declared.status_code, streamed.status_code])

    flooders = [threading.Thread(target=flood) for _ in range(2)]
    for thread in flooders:
        thread.start()
    try:
        with Load(webhook, threads=2) as load:
            time.sleep(4)
    finally:
        stop.set()
        for thread in flooders:
            thread.join(30)
    assert load.failures == [] and load.ok > 20
    assert refused and set(refused) == {413}
    assert rss_mib(webhook.process.pid) < before + 64, "oversized bodies must not be held in memory"

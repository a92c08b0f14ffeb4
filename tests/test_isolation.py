"""The test run has no network but loopback: every test's traffic stays on this machine.

scripts/test.sh runs pytest through scripts/isolated.sh, in a network namespace made for the run that holds
only `lo` and no route out: the tests' own servers (webhook processes, PostgreSQL, etcd, kube-apiserver,
podman with --network host) listen and dial on loopback, and any other address, such as the ClusterIP
(10.0.0.x) a kube-apiserver dials for a webhook registered by Service, fails at once with "Network is
unreachable" instead of leaving the machine. These tests assert that, and do not skip: pytest is only ever run
through scripts/test.sh, so they FAIL, as intended, when pytest runs anywhere else (for example straight on
the host network).
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster import require_isolated_network, routes_out

# a Service ClusterIP of the test clusters (10.0.0.0/24) and addresses outside the machine
UNREACHABLE = [
    (socket.AF_INET, "10.0.0.1", 443),
    (socket.AF_INET, "192.0.2.1", 443),  # TEST-NET-1 (RFC 5737): documentation only, routed nowhere
    (socket.AF_INET6, "2001:db8::1", 443),  # the IPv6 documentation prefix (RFC 3849)
]


def ip_json(*args: str) -> list[dict[str, object]]:
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=10)
    parsed: list[dict[str, object]] = json.loads(result.stdout or "[]")
    return parsed


def test_the_network_namespace_holds_only_lo_and_it_is_up() -> None:
    devices = Path("/proc/net/dev").read_text().splitlines()[2:]  # /proc/net: this process's namespace
    interfaces = [line.split(":")[0].strip() for line in devices]
    assert interfaces == ["lo"], f"links besides lo: {interfaces} (run pytest through scripts/test.sh)"
    links = ip_json("link", "show")
    assert [link["ifname"] for link in links] == ["lo"]
    assert "UP" in links[0]["flags"], links  # type: ignore[operator]


def test_no_route_leads_out() -> None:
    assert routes_out() == [], "routes out (run pytest through scripts/test.sh)"
    require_isolated_network()  # the end-to-end tier's guard (tests/cluster.py) lets this run start clusters
    for family in ("-4", "-6"):
        routes = ip_json(family, "route", "show", "table", "all")
        assert {route.get("dev") for route in routes} <= {"lo"}, routes
        assert not [route for route in routes if route.get("dst") == "default"], routes


@pytest.mark.parametrize(("family", "host", "port"), UNREACHABLE, ids=[host for _, host, _ in UNREACHABLE])
def test_a_dial_out_fails_at_once_with_network_unreachable(family: int, host: str, port: int) -> None:
    # never dial where a route exists: outside the run's namespace this would send a packet off the machine
    assert routes_out() == [], "routes out (run pytest through scripts/test.sh): not dialing"
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)  # a dial that left the machine would wait here, and fail the timing below
        with pytest.raises(OSError) as raised:
            sock.connect((host, port))
    elapsed = time.monotonic() - started
    assert raised.value.errno == errno.ENETUNREACH, raised.value
    assert elapsed < 0.5, f"{host}: failed only after {elapsed:.2f} s"


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_loopback_works(family: int, host: str) -> None:
    with socket.create_server((host, 0), family=family) as server:
        address = server.getsockname()[:2]
        with socket.create_connection(address, timeout=5), server.accept()[0]:
            pass

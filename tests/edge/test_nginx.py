"""Three `kirby api serve` replicas behind a real nginx with TLS behave as one API.

nginx runs Kirby's own template (docker/nginx/kirby.conf.template) with a certificate signed
by a CA made in the test; clients trust that CA only. The replicas trust nginx's address
(KIRBY_API_TRUSTED_PROXIES=127.0.0.1), and a client connects from 127.0.0.3, so the address
each replica logs says whose address it took.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from websockets.sync.client import connect

from kirby_cli import nginx
from tests import services
from tests.conftest import REPO
from tests.edge.conftest import Edge, make_certificate

CLIENT_ADDRESS = "127.0.0.3"
LATEST = "/candles/hyperliquid/BTC/USD/perps/1m?limit=100"


def _client(edge: Edge, **options: object) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=edge.ssl_context())
    return httpx.Client(transport=transport, timeout=10, **options)  # type: ignore[arg-type]


def test_rest_over_https_reaches_every_replica(edge: Edge) -> None:
    with _client(edge) as http:
        responses = [http.get(f"{edge.https}/starlistings") for _ in range(12)]
    assert {r.status_code for r in responses} == {200}
    assert responses[0].json() == responses[-1].json()
    assert responses[0].headers["strict-transport-security"] == "max-age=63072000"
    served = [len(replica.clients_of("/starlistings")) for replica in edge.replicas]
    assert sum(served) == 12
    assert min(served) > 0, served  # round robin: every replica took a share


def test_websocket_over_wss(edge: Edge) -> None:
    url = edge.https.replace("https://", "wss://") + "/ws"
    with connect(url, ssl=edge.ssl_context(), open_timeout=10) as socket:
        socket.send(json.dumps({"action": "ping"}))
        answer = json.loads(socket.recv(timeout=10))
    assert answer["type"] == "pong"


def test_http_redirects_to_https_keeping_path_and_query(edge: Edge) -> None:
    response = httpx.get(f"{edge.http}/candles/latest?limit=5&x=a%20b", timeout=10)
    assert response.status_code == 301
    assert response.headers["location"] == f"{edge.https}/candles/latest?limit=5&x=a%20b"


def _context_for(edge: Edge, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = edge.ssl_context()
    # Offer only `version`, with ciphers the client would otherwise refuse to offer, so a
    # refusal can only come from nginx.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
        context.minimum_version = context.maximum_version = version
    return context


def test_only_tls_1_2_and_1_3_are_served(edge: Edge) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        response = httpx.get(f"{edge.https}/health", verify=_context_for(edge, version))
        assert response.status_code == 200, version
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        # nginx answers the ClientHello with a protocol_version alert.
        with pytest.raises(httpx.ConnectError, match=r"(?i)protocol.version"):
            httpx.get(f"{edge.https}/health", verify=_context_for(edge, version))


def _clients_logged(edge: Edge, path: str) -> list[str]:
    return [client for replica in edge.replicas for client in replica.clients_of(path)]


def test_replicas_see_the_real_client_address_not_a_spoofed_one(edge: Edge) -> None:
    path = f"/probe-{uuid.uuid4().hex}"
    with _client(edge) as http:
        assert http.get(f"{edge.https}{path}").status_code == 404
        spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"}
        assert http.get(f"{edge.https}{path}", headers=spoofed).status_code == 404
    # nginx replaced the client's X-Forwarded-For with the address it really came from.
    assert _clients_logged(edge, path) == [CLIENT_ADDRESS, CLIENT_ADDRESS]


def test_forwarded_for_is_ignored_from_an_untrusted_peer(edge: Edge) -> None:
    replica = edge.replicas[0]
    path = f"/probe-{uuid.uuid4().hex}"
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    # Straight to a replica from 127.0.0.3, which is not a trusted proxy: header ignored.
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(transport=transport, timeout=10) as direct:
        assert direct.get(f"http://127.0.0.1:{replica.port}{path}", headers=spoofed).status_code
    # From 127.0.0.1, the trusted proxy's address: its header names the client.
    httpx.get(f"http://127.0.0.1:{replica.port}{path}", headers=spoofed, timeout=10)
    assert replica.clients_of(path) == [CLIENT_ADDRESS, "203.0.113.7"]


def test_without_trusted_proxies_forwarded_for_is_ignored(edge_factory) -> None:
    edge = edge_factory(replicas=1, env={"KIRBY_API_TRUSTED_PROXIES": ""})
    path = f"/probe-{uuid.uuid4().hex}"
    direct = f"http://127.0.0.1:{edge.replicas[0].port}{path}"
    httpx.get(direct, headers={"X-Forwarded-For": "203.0.113.7"}, timeout=10)
    with _client(edge) as http:
        http.get(f"{edge.https}{path}")
    # Through nginx too, the replica (trusting no proxy) logs nginx's own address.
    assert edge.replicas[0].clients_of(path) == ["127.0.0.1", "127.0.0.1"]


def test_a_replica_killed_mid_load_costs_no_more_than_its_in_flight_requests(
    edge: Edge,
) -> None:
    """Eight clients loop GETs through nginx; one replica is SIGKILLed once requests flow.
    nginx passes a GET that failed on the dead replica to the next one, so at most the
    requests in flight on it at the kill (fewer than the eight clients) may fail."""
    clients, per_client = 8, 60
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    flowing = threading.Barrier(clients + 1)

    def loop(index: int) -> None:
        with _client(edge) as http:
            for n in range(per_client):
                if n == 5:
                    flowing.wait(timeout=60)
                try:
                    status = http.get(f"{edge.https}{LATEST}").status_code
                    outcome = "ok" if status == 200 else f"status {status}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes[outcome] += 1

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(loop, i) for i in range(clients)]
        flowing.wait(timeout=60)
        edge.replicas[0].kill()
        for future in futures:
            future.result()
    failed = sum(count for outcome, count in outcomes.items() if outcome != "ok")
    print(f"outcomes with a replica killed mid-load: {dict(outcomes)}")
    assert outcomes["ok"] + failed == clients * per_client
    assert failed <= clients, outcomes
    assert len(edge.replicas[0].clients_of("/candles/hyperliquid/BTC/USD/perps/1m")) > 0
    assert all(replica.process.poll() is None for replica in edge.replicas[1:])


def test_the_failed_auth_budget_is_per_real_client_behind_nginx(edge_factory) -> None:
    """Behind nginx, one client spending its budget of requests without a valid key does
    not lock out another: each is budgeted by its own address, not nginx's (with no trusted
    proxy the second client gets 429 here)."""
    edge = edge_factory(
        replicas=1,
        env={"KIRBY_API_AUTH_ENABLED": "true", "KIRBY_API_AUTH_FAILURES_PER_MINUTE": "3"},
    )
    url = f"{edge.https}/starlistings"
    with _client(edge) as first:
        assert [first.get(url).status_code for _ in range(4)] == [401, 401, 401, 429]
    transport = httpx.HTTPTransport(local_address="127.0.0.4", verify=edge.ssl_context())
    with httpx.Client(transport=transport, timeout=10) as second:
        assert second.get(url).status_code == 401


def test_nginx_accepts_the_template_as_docker_compose_renders_it(tmp_path: Path) -> None:
    """`nginx -t` on compose's own values (any address, ports 80/443, `api:8000` as the
    upstream, here spelled as an address nginx can resolve), certificates from the test."""
    executable = services.binary("nginx", "nginx")
    environment = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["nginx"][
        "environment"
    ]
    values = {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))  # compose's defaults
        for name, value in environment.items()
        if name.startswith("KIRBY_")
    }
    assert values.pop("KIRBY_API_UPSTREAM") == "api:8000"
    make_certificate(tmp_path / "certs")
    values["KIRBY_NGINX_CERT_DIR"] = str(tmp_path / "certs")
    site = nginx.render_config(values, ["127.0.0.1:8000"])
    (tmp_path / "nginx.conf").write_text(nginx.standalone(site, prefix=tmp_path))
    checked = subprocess.run(
        [executable, "-t", "-p", tmp_path, "-e", tmp_path / "error.log", "-c", "nginx.conf"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "listen *:80;" in site and "listen *:443 ssl;" in site

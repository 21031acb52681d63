"""The edge's configuration without running anything: the nginx template's rendering, and
KIRBY_API_TRUSTED_PROXIES's parsing and how `kirby api serve` hands it to uvicorn."""

from __future__ import annotations

import ipaddress
import re

import pytest
from pydantic import ValidationError

from kirby_cli import failures, nginx
from kirby_cli.api import _uvicorn_options
from kirby_core.settings import Settings

VALUES = {
    "KIRBY_NGINX_ADDRESS": "*",
    "KIRBY_NGINX_HTTP_PORT": "80",
    "KIRBY_NGINX_HTTPS_PORT": "443",
    "KIRBY_NGINX_SERVER_NAME": "kirby.example.org",
    "KIRBY_NGINX_CERT_DIR": "/etc/nginx/certs",
}


def test_one_upstream_line_per_replica_and_nginx_variables_untouched() -> None:
    text = nginx.render_config(VALUES, ["10.0.0.1:8000", "10.0.0.2:8000"])
    servers = re.findall(r"^\s*server (\S+) max_fails=1 fail_timeout=5s;$", text, re.M)
    assert servers == ["10.0.0.1:8000", "10.0.0.2:8000"]
    assert re.search(r"\$\{KIRBY_[A-Z]", text) is None
    assert "return 301 https://$host:443$request_uri;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text


def test_retries_never_resend_a_non_idempotent_request() -> None:
    directives = [
        line.strip()
        for line in nginx.TEMPLATE.read_text().splitlines()
        if line.strip().startswith("proxy_next_upstream ")
    ]
    # nginx resends a POST/PATCH to the next replica only with `non_idempotent`.
    assert directives == ["proxy_next_upstream error timeout http_502 http_503;"]


def test_nginx_workers_share_round_robin_and_failures() -> None:
    # Without a zone each worker has its own round robin and its own view of a failed replica.
    text = nginx.render_config(VALUES, ["10.0.0.1:8000", "10.0.0.2:8000"])
    upstream = re.search(r"upstream kirby_api \{([^}]*)\}", text)
    assert upstream is not None
    assert re.search(r"^\s*zone kirby_api \d+k;$", upstream.group(1), re.M)


def test_a_missing_value_is_named() -> None:
    values = {k: v for k, v in VALUES.items() if k != "KIRBY_NGINX_CERT_DIR"}
    with pytest.raises(ValueError, match="no value for KIRBY_NGINX_CERT_DIR"):
        nginx.render_config(values, ["api:8000"])
    with pytest.raises(ValueError, match="at least one API replica"):
        nginx.render_config(VALUES, [])


def test_the_proxy_outwaits_the_websocket_heartbeat() -> None:
    timeout = re.search(r"proxy_read_timeout (\d+)s;", nginx.TEMPLATE.read_text())
    assert timeout is not None
    assert int(timeout.group(1)) > 3 * Settings().api_ws_heartbeat_seconds


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIRBY_API_TRUSTED_PROXIES", " 127.0.0.1, 10.1.2.3/8,::1 ")
    settings = Settings()
    assert settings.api_trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    options = _uvicorn_options(settings)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]


def test_no_trusted_proxy_by_default() -> None:
    # uvicorn on its own would trust 127.0.0.1's X-Forwarded-For.
    options = _uvicorn_options(Settings())
    assert options["proxy_headers"] is False
    assert options["forwarded_allow_ips"] == []


def test_a_bad_entry_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIRBY_API_TRUSTED_PROXIES", "127.0.0.1,nginx")
    with pytest.raises(ValidationError) as caught:
        Settings()
    lines = failures.explain(caught.value, None)
    assert lines[0].startswith("KIRBY_API_TRUSTED_PROXIES: ")
    assert "'nginx' is not an IP address or CIDR network" in lines[0]
    assert "10.0.0.0/8" in lines[0]

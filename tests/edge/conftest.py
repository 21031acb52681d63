"""The TLS edge as deployed: N `kirby api serve` replicas on one test database behind a real
nginx (Debian's package) running Kirby's own template, with a certificate made here.

`edge_factory(replicas=3, env={...})` starts the replicas (each with the extra environment,
e.g. a shared Redis URL) and nginx in the foreground on free loopback ports; `edge` is three
plain replicas. Everything is stopped when the test ends.
"""

from __future__ import annotations

import ipaddress
import signal
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kirby_cli import nginx
from kirby_core.db.urls import DatabaseUrls
from tests import services
from tests.db.conftest import catalog  # noqa: F401  (the synced realtime catalog)


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye, as a crashed host."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def clients_of(self, path: str) -> list[str]:
        """The client address of each access-log line of requests to `path`."""
        return [
            line.rsplit("client=", 1)[1].strip()
            for line in self.log.read_text().splitlines()
            if f" path={path} " in line and "client=" in line
        ]


@dataclass
class Edge:
    https: str
    """https://127.0.0.1:<port>"""
    http: str
    """http://127.0.0.1:<port> (redirects to https)"""
    ca: Path
    """The certificate authority that signed nginx's certificate."""
    replicas: list[Replica] = field(default_factory=list)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificate(directory: Path) -> Path:
    """A CA, and a certificate for 127.0.0.1/localhost signed by it, in Let's Encrypt's file
    names (fullchain.pem, privkey.pem) under `directory`; returns the CA's file."""
    now = datetime.now(UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        else:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = (
                builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
                )
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("Kirby test CA", None, ca_key, ca_key, ca=True)
    cert = build("localhost", ca_cert.subject, key, ca_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    return directory / "ca.pem"


def nginx_conf(prefix: Path, upstreams: list[str], http_port: int, https_port: int) -> Path:
    """Kirby's template for these ports and replicas, wrapped for a foreground nginx."""
    site = nginx.render_config(
        {
            "KIRBY_NGINX_ADDRESS": "127.0.0.1",
            "KIRBY_NGINX_HTTP_PORT": str(http_port),
            "KIRBY_NGINX_HTTPS_PORT": str(https_port),
            "KIRBY_NGINX_SERVER_NAME": "localhost",
            "KIRBY_NGINX_CERT_DIR": str(prefix / "certs"),
        },
        upstreams,
    )
    conf = prefix / "nginx.conf"
    conf.write_text(nginx.standalone(site, prefix=prefix))
    return conf


@pytest.fixture
def edge_factory(
    database_urls: DatabaseUrls,
    tmp_path: Path,
    catalog: dict[str, int],  # noqa: F811  (the fixture imported above)
) -> Iterator[Callable[..., Edge]]:
    executable = services.binary("nginx", "nginx")
    processes: list[subprocess.Popen[bytes]] = []

    def start(replicas: int = 3, env: dict[str, str] | None = None) -> Edge:
        prefix = tmp_path / f"edge-{len(processes)}"
        prefix.mkdir()
        ca = make_certificate(prefix / "certs")
        members = []
        for _ in range(replicas):
            port = services.free_port()
            process, log = services.start_api(
                database_urls,
                prefix,
                port,
                {"KIRBY_API_TRUSTED_PROXIES": "127.0.0.1", **(env or {})},
            )
            processes.append(process)
            members.append(Replica(port, process, log))
        http_port, https_port = services.free_port(), services.free_port()
        conf = nginx_conf(prefix, [f"127.0.0.1:{r.port}" for r in members], http_port, https_port)
        log = prefix / "nginx.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(executable), "-p", prefix, "-e", prefix / "error.log", "-c", conf],
                cwd=prefix,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        edge = Edge(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", ca, members)
        services.wait_until_ready(f"{edge.https}/health", process, log, verify=edge.ssl_context())
        return edge

    try:
        yield start
    finally:
        for process in reversed(processes):
            services.stop(process)


@pytest.fixture
def edge(edge_factory: Callable[..., Edge]) -> Edge:
    """Three replicas behind nginx."""
    return edge_factory()

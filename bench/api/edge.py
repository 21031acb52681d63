"""The TLS edge's cost: three Kirby replicas behind nginx (HTTPS) against one replica direct.

    python -m bench.api.edge [--rows 100000] [--seconds 8]

In one run, on one scratch database (8 starlistings x `--rows` 1m candles): three
`kirby api serve` replicas (auth on, INFO access log, proxy headers trusted from 127.0.0.1)
and a real nginx (Debian's package) running Kirby's own template (docker/nginx/
kirby.conf.template, rendered by kirby_cli.nginx) with a self-signed certificate. Each
scenario runs against replica 1 over plain HTTP and against nginx over HTTPS in alternating
rounds (keep-alive connections on both legs, TLS handshakes only at connect), and against
a second nginx in front of replica 1 alone, which separates the proxy's own cost from what
spreading requests over three processes costs (each has its own latest-N cache): candles
latest-N and random historical windows (limit 1000), concurrency 1 and 10, bounded loops.
Prints p50/p99 and the proxy's overhead (nginx p99 - direct p99); target (issue 16):
<= 2 ms.

The engine's own limit, in the same rounds: a third nginx serving one real response body
(a latest-N page, same size) as a static file ("origin", plain HTTP), alone and behind a
fourth nginx running the same template over HTTPS ("origin x1"). Its overhead is what nginx
and TLS cost on this machine with an upstream that costs next to nothing, so the Kirby
overhead can be read against it.

Everything shares the machine (2 cores here): at concurrency 10 the three replicas, nginx,
PostgreSQL and the client contend for CPU, so the figure is an upper bound of the proxy's
own cost. Never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import uvloop

from bench.api import load
from bench.api.run import T0, prepare
from bench.api.servers import HOST, Server, cpu_busy, free_port, start_kirby
from bench.common import drop_database, scratch_database
from kirby_cli import nginx

DATABASE = "kirby_bench_edge"
REPLICAS = 3
ROUNDS = 4


def _merged(results: list[load.Result]) -> load.Result:
    return load.Result(
        sum(r.requests for r in results),
        sum(r.seconds for r in results),
        [latency for r in results for latency in r.latencies],
        sum(r.errors for r in results),
        sum(r.bytes for r in results),
    )


def _certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (openssl), in Let's Encrypt's file names."""
    directory.mkdir()
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    command += f" -days 1 -subj /CN=localhost -addext subjectAltName=IP:{HOST},DNS:localhost"
    keys = ["-keyout", directory / "privkey.pem", "-out", directory / "fullchain.pem"]
    subprocess.run([*command.split(), *keys], check=True, capture_output=True)
    return directory / "fullchain.pem"


def _nginx() -> str:
    executable = shutil.which("nginx")
    if executable is None:
        raise SystemExit("nginx is not installed (Debian: apt-get install nginx)")
    return executable


def _run_nginx(prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [_nginx(), "-p", prefix, "-e", prefix / "error.log", "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _start_origin(prefix: Path, body: bytes) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving `body` as a static JSON file for every path, over plain HTTP."""
    prefix.mkdir()
    (prefix / "body.json").write_bytes(body)
    port = free_port()
    site = f"""server {{
    listen {HOST}:{port};
    location / {{
        root {prefix};
        default_type application/json;
        try_files /body.json =404;
    }}
}}"""
    conf = prefix / "nginx.conf"
    conf.write_text(nginx.standalone(site, prefix=prefix))
    return _run_nginx(prefix, conf), port


def _start_nginx(
    prefix: Path, certs: Path, upstreams: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    https_port = free_port()
    site = nginx.render_config(
        {
            "KIRBY_NGINX_ADDRESS": HOST,
            "KIRBY_NGINX_HTTP_PORT": str(free_port()),
            "KIRBY_NGINX_HTTPS_PORT": str(https_port),
            "KIRBY_NGINX_SERVER_NAME": "localhost",
            "KIRBY_NGINX_CERT_DIR": str(certs),
        },
        upstreams,
    )
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx.standalone(site, prefix=prefix))
    return _run_nginx(prefix, conf), https_port


async def _wait_tls(port: int, tls: ssl.SSLContext | None) -> None:
    for _ in range(100):
        try:
            status, _ = await load.Connection(HOST, port, {}, tls).get("/health")
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"nginx on port {port} did not answer /health")


async def main(rows: int, seconds: float) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    url = await scratch_database(DATABASE)
    replicas: list[Server] = []
    edges: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="kirby-edge-") as scratch:
        prefix = Path(scratch)
        try:
            stars, token = await prepare(url, rows)
            ports = [free_port() for _ in range(REPLICAS)]
            trusted = {"KIRBY_API_TRUSTED_PROXIES": HOST}
            replicas = [start_kirby(url, port, trusted) for port in ports]
            for replica in replicas:
                replica.wait_ready()
            tls = ssl.create_default_context(cafile=_certificate(prefix / "certs"))
            upstreams = [f"{HOST}:{port}" for port in ports]
            targets: dict[str, tuple[int, ssl.SSLContext | None]] = {"direct": (ports[0], None)}
            for name, members in (("nginx x3", upstreams), ("nginx x1", upstreams[:1])):
                edge, https_port = _start_nginx(prefix / name[-2:], prefix / "certs", members)
                edges.append(edge)
                await _wait_tls(https_port, tls)
                targets[name] = (https_port, tls)
            rng = random.Random(11)
            headers = {"Authorization": f"Bearer {token}"}
            page = await load.Connection(HOST, ports[0], headers).body(
                f"/candles/{stars[0].key}?limit=1000"
            )
            origin, origin_port = _start_origin(prefix / "origin", page)
            edges.append(origin)
            await _wait_tls(origin_port, None)
            targets["origin"] = (origin_port, None)
            edge, https_port = _start_nginx(
                prefix / "ox1", prefix / "certs", [f"{HOST}:{origin_port}"]
            )
            edges.append(edge)
            await _wait_tls(https_port, tls)
            targets["origin x1"] = (https_port, tls)
            print(
                f"replica 1 direct (HTTP) vs nginx {nginx_version()} (HTTPS) in front of "
                f"{REPLICAS} replicas, and of replica 1 alone; engine: a static origin "
                f"({len(page) / 1024:.0f} KiB body) direct and behind the same nginx"
            )

            def latest() -> str:
                return f"/candles/{rng.choice(stars).key}?limit=1000"

            def window() -> str:
                start = T0 + timedelta(minutes=rng.randrange(0, rows - 1000))
                key = rng.choice(stars).key
                return f"/candles/{key}?limit=1000&start_time={start:%Y-%m-%dT%H:%M:%SZ}"

            scenarios: dict[str, Callable[[], str]] = {
                "candles latest-N limit=1000": latest,
                "candles window limit=1000": window,
            }
            busy0, total0 = cpu_busy()
            overheads = []
            for name, next_path in scenarios.items():
                for concurrency in (1, 10):
                    label = f"{name} c={concurrency}"
                    # Alternating rounds, so both targets see the same background load.
                    rounds: dict[str, list[load.Result]] = {target: [] for target in targets}
                    for _ in range(ROUNDS):
                        for target, (port, context) in targets.items():
                            await load.run(
                                HOST, port, next_path, concurrency, 50, 10, headers, context
                            )
                            rounds[target].append(
                                await load.run(
                                    HOST,
                                    port,
                                    next_path,
                                    concurrency,
                                    3000 // ROUNDS,
                                    seconds / ROUNDS,
                                    headers,
                                    context,
                                )
                            )
                    measured = {target: _merged(results) for target, results in rounds.items()}
                    for target, result in measured.items():
                        print(f"  {label:<32} {target:<9} {result.line()}")
                    for target, base in (
                        ("nginx x3", "direct"),
                        ("nginx x1", "direct"),
                        ("origin x1", "origin"),
                    ):
                        over, under = measured[target], measured[base]
                        overheads.append(
                            (
                                f"{label} {target}",
                                over.percentile(50) - under.percentile(50),
                                over.percentile(99) - under.percentile(99),
                            )
                        )
            busy1, total1 = cpu_busy()
            print(f"\nmachine: CPUs {100 * (busy1 - busy0) / (total1 - total0):.0f}% busy")
            print(
                "proxy overhead (nginx - direct; target: p99 <= 2 ms; origin x1 - origin:"
                " the engine's own, a static upstream)"
            )
            for label, p50, p99 in overheads:
                print(f"  {label:<41} p50 {p50:+7.2f} ms  p99 {p99:+7.2f} ms")
        finally:
            for edge in edges:
                edge.terminate()
                edge.wait(20)
            for replica in replicas:
                replica.stop()
            await drop_database(url, DATABASE)


def nginx_version() -> str:
    found = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return found.stderr.strip().removeprefix("nginx version: ")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="1m candles per starlisting")
    parser.add_argument("--seconds", type=float, default=8.0, help="bound of each loop")
    args = parser.parse_args()
    # uvloop keeps the client's side (and its TLS) cheap, as in bench.api.run
    uvloop.run(main(args.rows, args.seconds))


if __name__ == "__main__":
    cli()

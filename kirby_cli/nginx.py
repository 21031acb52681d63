"""Render Kirby's nginx edge config (docker/nginx/kirby.conf.template) outside Docker.

The nginx image renders the template with envsubst; this does the same substitution for the
tests, the edge bench and a deployment without Docker, plus one thing envsubst cannot: the
upstream `server ${KIRBY_API_UPSTREAM} ...;` line is repeated once per replica address (under
Docker one service name resolves to every replica). A `${KIRBY_*}` name left without a value
is an error, not an empty string. The template is read from Kirby's checkout (docker/ is
not package data; the Kirby image does not need it, the nginx container mounts it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "docker" / "nginx" / "kirby.conf.template"
UPSTREAM = "KIRBY_API_UPSTREAM"
_NAME = re.compile(r"\$\{(KIRBY_[A-Z0-9_]+)\}")


def render_config(
    values: Mapping[str, str], upstreams: Sequence[str], template: str | None = None
) -> str:
    """The config with every `${KIRBY_*}` filled from `values` and one upstream line per
    address in `upstreams` (host:port)."""
    if not upstreams:
        raise ValueError("at least one API replica address (host:port) is required")
    text = TEMPLATE.read_text() if template is None else template
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        if "${" + UPSTREAM + "}" in line:
            lines.extend(line.replace("${" + UPSTREAM + "}", address) for address in upstreams)
        else:
            lines.append(line)
    missing = sorted({name for name in _NAME.findall("".join(lines)) if name not in values})
    if missing:
        raise ValueError(f"no value for {', '.join(missing)} in the nginx template")
    return _NAME.sub(lambda match: values[match.group(1)], "".join(lines))


def standalone(site: str, *, prefix: Path) -> str:
    """A whole nginx.conf around `site` for `nginx -p <prefix> -c <file>` run in the
    foreground (tests, bench): logs, pid and temporary files all under `prefix`, and the
    workers run as the user who started it (root's workers would otherwise be `nobody`,
    who cannot write the temporary files)."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""daemon off;
{user}worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
"""

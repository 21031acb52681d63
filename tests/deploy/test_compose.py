"""The docker-compose deployment stays true to the code: variables, settings, services, paths.

No Docker engine is needed: the compose file is read with PyYAML, the Dockerfile as text.
When `docker-compose` (or `docker` with the compose plugin) is installed, `config` also
validates the file the way `docker compose up` would read it; CI installs Debian's
`docker-compose` (which validates without an engine) and requires it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from kirby_cli import nginx
from kirby_core.settings import Settings
from tests.redis_server import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

KIRBY_SERVICES = {"migrate", "dagster-webserver", "dagster-daemon", "api"}
LONG_RUNNING = {
    "timescaledb",
    "dagster-webserver",
    "dagster-daemon",
    "api",
    "nginx",
    "redis",
    "pgadmin",
    "prometheus",
    "grafana",
}
PROFILES = {"pgadmin": ["pgadmin"], "prometheus": ["monitoring"], "grafana": ["monitoring"]}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; `$${...}` is an
# escaped dollar (left for the container's shell) and not a compose variable.
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])[^}]*)?\}")
# `VAR=value` or a documented default `# VAR=value`.
_ENV_LINE = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _env_example() -> dict[str, tuple[bool, str]]:
    """Variable -> (set: uncommented, value)."""
    variables: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            commented, name, value = match.groups()
            variables.setdefault(name, (commented is None, value))
    return variables


def _strings(node: Any) -> list[str]:
    """Every key and scalar of a parsed YAML document (comments are gone by then)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _compose_variables() -> dict[str, set[str]]:
    """Variable -> the operators it is used with ('' for a plain ${VAR})."""
    used: dict[str, set[str]] = {}
    for text in _strings(_compose()):
        for name, operator in _VARIABLE.findall(text):
            used.setdefault(name, set()).add(operator)
    return used


def _kirby_setting_names() -> set[str]:
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{field}".upper() for field in Settings.model_fields}


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = _compose_variables()
    assert {"POSTGRES_PASSWORD", "KIRBY_IMAGE", "NGINX_HTTPS_PORT"} <= used.keys()
    documented = _env_example()
    assert sorted(used.keys() - documented.keys()) == []
    # A variable compose requires (`:?`) must have a value in the example, not a comment.
    required = {name for name, operators in used.items() if operators & {":?", "?"}}
    assert "POSTGRES_PASSWORD" in required
    assert sorted(name for name in required if not documented[name][0]) == []


def test_every_kirby_setting_is_documented_in_env_example() -> None:
    settings = _kirby_setting_names()
    assert "KIRBY_DATABASE_URL" in settings and len(settings) > 30
    documented = _env_example()
    assert sorted(settings - documented.keys()) == []
    # And nothing documented as KIRBY_* that Settings would silently ignore.
    kirby_documented = {name for name in documented if name.startswith("KIRBY_")}
    assert sorted(kirby_documented - settings - {"KIRBY_IMAGE"}) == []


def test_env_example_points_kirby_at_the_timescaledb_service_and_real_exchanges() -> None:
    documented = _env_example()
    for name in ("KIRBY_DATABASE_URL", "KIRBY_TRAINING_DATABASE_URL", "KIRBY_DAGSTER_DATABASE_URL"):
        is_set, value = documented[name]
        assert is_set, name
        assert re.fullmatch(r"postgresql://[^:@/]+@timescaledb:5432/\w+", value), value
    databases = {
        documented[name][1].rsplit("/", 1)[1]
        for name in (
            "KIRBY_DATABASE_URL",
            "KIRBY_TRAINING_DATABASE_URL",
            "KIRBY_DAGSTER_DATABASE_URL",
        )
    }
    created = {
        documented[name][1]
        for name in ("POSTGRES_DB", "POSTGRES_TRAINING_DB", "POSTGRES_DAGSTER_DB")
    }
    assert databases == created
    for field in (
        "hyperliquid_rest_url",
        "hyperliquid_ws_url",
        "binance_spot_url",
        "binance_futures_url",
    ):
        default = Settings.model_fields[field].default
        assert documented[f"KIRBY_{field.upper()}"] == (True, default)


def test_env_example_values_parse_as_settings() -> None:
    values = {name: value for name, (is_set, value) in _env_example().items() if is_set}
    kirby = {name: value for name, value in values.items() if name in _kirby_setting_names()}
    settings = Settings(
        _env_file=None, **{k.removeprefix("KIRBY_").lower(): v for k, v in kirby.items()}
    )  # type: ignore[call-arg]
    assert settings.api_auth_enabled is True
    assert settings.dagster_database_url is not None


def test_expected_services_exist() -> None:
    services = _services()
    assert {"timescaledb", *KIRBY_SERVICES, *PROFILES} <= services.keys()
    assert {name: services[name].get("profiles") for name in services if name in PROFILES} == (
        PROFILES
    )
    assert all("profiles" not in services[name] for name in services if name not in PROFILES)


def test_monitoring_mounts_the_repository_files_it_is_configured_with() -> None:
    """Prometheus reads docker/prometheus (config + rules), Grafana its provisioning and the
    dashboards at the path the dashboard provider names; Prometheus scrapes the api service."""
    services = _services()
    mounts = {
        name: {
            target: source
            for source, target, *_ in (v.split(":") for v in services[name]["volumes"])
            if source.startswith("./")
        }
        for name in ("prometheus", "grafana")
    }
    assert mounts["prometheus"] == {"/etc/prometheus": "./docker/prometheus"}
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    prometheus = yaml.safe_load((ROOT / "docker/prometheus/prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    assert (ROOT / "docker/prometheus/alerts.yml").is_file()
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    # One target per api replica (Docker's DNS has one address per replica).
    discovery = prometheus["scrape_configs"][0]["dns_sd_configs"]
    assert discovery == [
        {"names": ["api"], "type": "A", "port": int(api_port), "refresh_interval": "30s"}
    ]
    grafana = mounts["grafana"]
    provider = yaml.safe_load(
        (ROOT / grafana["/etc/grafana/provisioning"] / "dashboards/kirby.yml").read_text()
    )["providers"][0]
    dashboards = ROOT / grafana[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json"))
    datasource = yaml.safe_load(
        (ROOT / grafana["/etc/grafana/provisioning"] / "datasources/prometheus.yml").read_text()
    )["datasources"][0]
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"


def test_api_scales_behind_nginx() -> None:
    """No fixed name or host port on api (`--scale api=N`); nginx is the only way in, runs
    Kirby's template with the certificate files, and is the proxy the replicas trust."""
    services = _services()
    api, edge = services["api"], services["nginx"]
    assert "container_name" not in api and "ports" not in api
    api_port = api["command"][api["command"].index("--port") + 1]
    assert edge["environment"]["KIRBY_API_UPSTREAM"] == f"api:{api_port}"
    mounts = {
        target: source
        for source, target, *_ in (v.split(":") for v in edge["volumes"])
        if source.startswith("./")
    }
    assert mounts == {
        "/etc/nginx/templates/kirby.conf.template": "./docker/nginx/kirby.conf.template",
        "/etc/nginx/certs": "./docker/nginx/certs",
        "/var/www/certbot": "./docker/nginx/acme",
    }
    assert (ROOT / "docker/nginx/certs").is_dir() and (ROOT / "docker/nginx/acme").is_dir()
    # Every template variable has a value (the template's own check, on compose's values).
    variables = {k: v for k, v in edge["environment"].items() if k.startswith("KIRBY_")}
    nginx.render_config(variables, [variables.pop("KIRBY_API_UPSTREAM")])
    subnet = _compose()["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert api["environment"]["KIRBY_API_TRUSTED_PROXIES"] == subnet


def test_api_replicas_share_the_redis_service() -> None:
    """Every api replica points at the `redis` service, starts once it answers, and that Redis
    keeps nothing on disk and publishes no port."""
    services = _services()
    api, shared = services["api"], services["redis"]
    # as the client library reads it: the service's name, Redis's port, database 0
    target = redis.connection.parse_url(api["environment"]["KIRBY_REDIS_URL"])
    assert target == {"host": "redis", "port": 6379, "db": 0}
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert shared["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    assert shared["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert "ports" not in shared and "volumes" not in shared
    assert "redis-cli ping" in shared["healthcheck"]["test"][1]


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_have_healthcheck_and_restart_policy(name: str) -> None:
    service = _services()[name]
    assert service.get("restart") == "unless-stopped"
    test = service.get("healthcheck", {}).get("test")
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1


def test_migrate_is_one_shot_and_gates_the_kirby_services() -> None:
    services = _services()
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    script = " ".join(migrate["command"])
    for step in (
        "kirby db migrate --database both",
        "kirby catalog sync --database realtime",
        "kirby catalog sync --database training",
        "dagster instance migrate",
    ):
        assert step in script
    assert migrate["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name in KIRBY_SERVICES - {"migrate"}:
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_kirby_services_share_image_env_file_and_password() -> None:
    services = _services()
    for name in KIRBY_SERVICES:
        service = services[name]
        assert service["image"] == "${KIRBY_IMAGE:-kirby:latest}", name
        assert service["env_file"] == ".env", name
        assert "POSTGRES_PASSWORD" in service["environment"]["PGPASSWORD"], name


def test_dagster_services_share_lake_and_storage_volumes() -> None:
    compose = _compose()
    for name in ("dagster-webserver", "dagster-daemon"):
        volumes = compose["services"][name]["volumes"]
        assert "lake:/app/lake" in volumes and "dagster-storage:/app/storage" in volumes
        assert "backups:/app/backups" in volumes  # the backup assets and their check
    assert {
        "timescaledb-data",
        "lake",
        "backups",
        "dagster-storage",
        "pgadmin-data",
        "prometheus-data",
        "grafana-data",
    } <= compose["volumes"].keys()


def test_timescaledb_runs_the_init_script() -> None:
    service = _services()["timescaledb"]
    mounts = [volume.split(":") for volume in service["volumes"] if volume.startswith("./")]
    assert mounts, "no init script mounted"
    for source, target, *_ in mounts:
        assert (ROOT / source).is_file(), source
        if target.startswith("/docker-entrypoint-initdb.d/"):
            assert os.access(ROOT / source, os.X_OK), f"{source} must be executable"
            assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in (ROOT / source).read_text()
    assert any(target.startswith("/docker-entrypoint-initdb.d/") for _, target, *_ in mounts)


def test_no_secret_is_hard_coded_in_compose() -> None:
    text = COMPOSE_FILE.read_text()
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line):
            assert "${" in line, line


def _dockerfile_copy_sources() -> list[str]:
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from") for word in words[1:]):
            continue
        sources.extend(arguments[:-1])
    return sources


def test_dockerfile_copies_existing_paths() -> None:
    sources = _dockerfile_copy_sources()
    assert {"pyproject.toml", "kirby_core/", "config/", "dagster.yaml", "workspace.yaml"} <= set(
        sources
    )
    assert sorted(source for source in sources if not (ROOT / source).exists()) == []


def test_dockerfile_copies_every_packaged_directory() -> None:
    """A package added to pyproject's discovery must be copied into the build stage too."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {source.rstrip("/") for source in _dockerfile_copy_sources()}
    assert (
        sorted(pattern.rstrip("*") for pattern in includes if pattern.rstrip("*") not in copied)
        == []
    )


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".kirby", ".git"} <= ignored
    # Unanchored patterns only match at the context root: kirby_pipelines/defs/lake stays.
    assert "**/lake" not in ignored


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("profile", [None, "pgadmin", "monitoring"])
def test_compose_config_validates(tmp_path: Path, profile: str | None) -> None:
    command = _compose_command()
    if command is None:
        reason = "neither `docker compose` nor `docker-compose` is installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"KIRBY_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    profile_args = ["--profile", profile] if profile else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", *profile_args, "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    expected = {"timescaledb", *KIRBY_SERVICES} | {
        name for name, profiles in PROFILES.items() if profile in profiles
    }
    assert expected <= rendered["services"].keys()
    api = rendered["services"]["api"]
    assert api["environment"]["KIRBY_DATABASE_URL"].endswith("@timescaledb:5432/kirby")
    # the service's own setting wins over .env's (where it is only documented)
    assert api["environment"]["KIRBY_REDIS_URL"] == "redis://redis:6379/0"
    assert rendered["services"]["redis"]["image"] == "redis:7-alpine"


def test_package_data_covers_every_non_python_file() -> None:
    """`pip install .` (the image) ships only .py files plus pyproject's package-data: every
    other file in a packaged directory (migrations' template, SQL models, API static files)
    must be matched by a package-data pattern."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = [
        pattern.rstrip("*").rstrip(".") for pattern in setuptools["packages"]["find"]["include"]
    ]
    shipped: set[Path] = set()
    for package, patterns in setuptools["package-data"].items():
        directory = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            shipped.update(path for path in directory.glob(pattern) if path.is_file())
    others = {
        path
        for root in roots
        for path in (ROOT / root).rglob("*")
        # .so: the compiled module, built in place by an editable install
        if path.is_file()
        and path.suffix not in {".py", ".pyc", ".so"}
        and "__pycache__" not in path.parts
    }
    assert any(path.suffix == ".sql" for path in others)
    assert sorted(str(path.relative_to(ROOT)) for path in others - shipped) == []

"""`kirby_core` imports no framework and no app (STYLE.md, "Layout and direction").

Every module of the package is imported in a fresh interpreter (this test process has long
since imported Litestar, Dagster and the simulator), then `sys.modules` is inspected.
aiohttp itself may be present: ccxt's async clients use it as their HTTP transport. Its
server framework (`aiohttp.web`) may not, and no kirby_core module imports aiohttp directly.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import kirby_core

CORE = Path(kirby_core.__file__).parent

FORBIDDEN = (
    "aiohttp.web",
    "litestar",
    "dagster",
    "dagster_webserver",
    "dagster_postgres",
    "fastapi",
    "starlette",
    "uvicorn",
    "kirby_api",
    "kirby_cli",
    "kirby_pipelines",
    "kirby_sim",
    "kirby_stream",
)

_PROBE = """
import importlib, json, pkgutil, sys
import kirby_core
names = [m.name for m in pkgutil.walk_packages(kirby_core.__path__, "kirby_core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def test_kirby_core_modules_import_no_framework_or_app() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    probe = json.loads(result.stdout.splitlines()[-1])
    # the walk really reached the package's modules, subpackages included
    assert {"kirby_core.settings", "kirby_core.db.writer", "kirby_core.exchanges.base"} <= set(
        probe["imported"]
    )
    loaded = [
        name
        for name in probe["modules"]
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    ]
    assert loaded == []


def test_no_kirby_core_module_imports_aiohttp_directly() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(CORE)}: {module}"
                for module in modules
                if module.split(".")[0] in {"aiohttp", "litestar", "dagster"}
            ]
    assert offenders == []

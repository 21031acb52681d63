"""PostgreSQL's client programs (`pg_dump`, `pg_restore`, `psql`) matched to a server, and
run safely.

A custom-format dump is read only by a `pg_restore` at least as new as the `pg_dump` that
wrote it, and `pg_dump` refuses a server newer than itself; a newer client may also write
settings an older server does not know. So Kirby takes the programs whose major version is
the server's, and only when there are none the lowest newer one. Candidates, in order:
`KIRBY_PG_BIN_DIR` (alone, when set), the embedded server's own (`pgserver`'s
pginstall/bin), Debian's `/usr/lib/postgresql/<major>/bin`, and the directory of `pg_dump`
on PATH.

Passwords never reach a command line (where `ps` shows them) nor a log: the URL handed to a
program has its password removed, and the password travels in `PGPASSWORD`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from kirby_core.errors import ConfigError, StorageError
from kirby_core.logs import redact

PROGRAMS = ("pg_dump", "pg_restore", "psql")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


@dataclass(frozen=True)
class PgTools:
    """`pg_dump` and `pg_restore` of one PostgreSQL major version."""

    major: int
    bin_dir: Path

    @property
    def pg_dump(self) -> Path:
        return self.bin_dir / "pg_dump"

    @property
    def pg_restore(self) -> Path:
        return self.bin_dir / "pg_restore"

    @property
    def psql(self) -> Path:
        return self.bin_dir / "psql"


def candidate_dirs(bin_dir: Path | None = None) -> list[Path]:
    if bin_dir is not None:
        return [bin_dir]
    found: list[Path] = []
    try:
        import pgserver  # the embedded server's binaries (the wheel ships client tools too)

        found.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    found.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    on_path = shutil.which("pg_dump")
    if on_path:
        found.append(Path(on_path).parent)
    return list(dict.fromkeys(found))


def major_version(program: Path) -> int | None:
    """The major version `program --version` reports; None when it cannot run."""
    try:
        out = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def find_tools(server_major: int, bin_dir: Path | None = None) -> PgTools:
    """The client programs for a server of `server_major` (see the module docstring)."""
    available: dict[int, Path] = {}
    for directory in candidate_dirs(bin_dir):
        if not all((directory / name).exists() for name in PROGRAMS):
            continue
        major = major_version(directory / "pg_dump")
        if major is not None and major == major_version(directory / "pg_restore"):
            available.setdefault(major, directory)
    fitting = sorted(major for major in available if major >= server_major)
    if not fitting:
        seen = ", ".join(f"{m} in {d}" for m, d in sorted(available.items())) or "none"
        raise ConfigError(
            f"no pg_dump/pg_restore/psql of PostgreSQL {server_major} or newer was found (found: "
            f"{seen}); install PostgreSQL {server_major}'s client programs or point "
            "KIRBY_PG_BIN_DIR at them"
        )
    return PgTools(fitting[0], available[fitting[0]])


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL a libpq program gets (password removed) and the environment carrying it."""
    parts = urlsplit(url)
    env = dict(os.environ)  # libpq's own variables (PGSSLMODE, PGPASSWORD from compose) pass
    if parts.password is None:
        return url, env
    credentials, host = parts.netloc.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    netloc = f"{user}@{host}" if user else host
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=netloc)), env


async def run_tool(
    program: Path, args: list[str], url: str, *, url_option: str = "--dbname"
) -> str:
    """Run a client program against `url`; its stdout, or StorageError with its stderr."""
    target, env = libpq_target(url)
    process = await asyncio.create_subprocess_exec(
        str(program),
        *args,
        f"{url_option}={target}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        message = redact(err.decode(errors="replace").strip())
        raise StorageError(f"{program.name} failed (exit {process.returncode}): {message}")
    return out.decode(errors="replace")


async def contents(pg_restore: Path, dump_file: Path) -> list[str]:
    """The table of contents of a custom-format dump (`pg_restore --list`), one entry a
    line; edited, it goes back in as `--use-list` to restore only some entries."""
    process = await asyncio.create_subprocess_exec(
        str(pg_restore),
        "--list",
        str(dump_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        message = err.decode(errors="replace").strip()
        raise StorageError(f"pg_restore --list failed (exit {process.returncode}): {message}")
    return out.decode(errors="replace").splitlines()


async def restore_in_one_transaction(
    tools: PgTools, restore_args: list[str], prelude: list[str], url: str
) -> None:
    """`prelude` (SQL statements) and then a dump, in one transaction on `url`.

    `pg_restore --single-transaction` cannot run statements of the caller's inside its
    transaction, so the dump goes through `pg_restore --file=-` (SQL) into `psql`
    (`ON_ERROR_STOP`) after `BEGIN` and the prelude; `COMMIT` is sent only once
    `pg_restore` has ended well. An error in either leaves the database as it was.
    """
    target, env = libpq_target(url)
    psql = await asyncio.create_subprocess_exec(
        str(tools.psql),
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        "--file=-",
        f"--dbname={target}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    restore = await asyncio.create_subprocess_exec(
        str(tools.pg_restore),
        *restore_args,
        "--file=-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert psql.stdin and psql.stderr and restore.stdout and restore.stderr
    psql_errors = asyncio.create_task(psql.stderr.read())
    restore_errors = asyncio.create_task(restore.stderr.read())
    try:
        psql.stdin.write("".join(f"{sql};\n" for sql in ["BEGIN", *prelude]).encode())
        while chunk := await restore.stdout.read(1 << 16):
            psql.stdin.write(chunk)
            await psql.stdin.drain()
        if await restore.wait() == 0:
            psql.stdin.write(b"COMMIT;\n")
            await psql.stdin.drain()
        psql.stdin.close()  # without COMMIT: psql ends and the transaction rolls back
    except (BrokenPipeError, ConnectionResetError):
        pass  # psql stopped at an error; its message says which
    finally:
        if restore.returncode is None:
            restore.kill()
            await restore.wait()
    psql_exit = await psql.wait()
    psql_message = redact((await psql_errors).decode(errors="replace").strip())
    restore_message = (await restore_errors).decode(errors="replace").strip()
    if psql_exit != 0:
        raise StorageError(f"psql failed (exit {psql_exit}), nothing restored: {psql_message}")
    if restore.returncode != 0:
        raise StorageError(
            f"pg_restore failed (exit {restore.returncode}), nothing restored: {restore_message}"
        )

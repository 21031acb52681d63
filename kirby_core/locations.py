"""Where Kirby keeps files: a local directory or any fsspec filesystem URL.

The lake and the backups each have one location setting (`KIRBY_LAKE_DIR`,
`KIRBY_BACKUP_URL`) that is either a plain path (`lake`, `/srv/kirby/backups`) or a URL
whose scheme names an fsspec filesystem (`s3://bucket/prefix`, `gs://...`, `file:///...`).
`location()` turns one into a filesystem and a root path inside it; everything else joins
paths under that root with `/` and never asks which kind it got.

Object storage: `s3://` goes through s3fs. Credentials come from the standard AWS
variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_PROFILE`...) as the AWS libraries read them; an S3-compatible endpoint is
`KIRBY_S3_ENDPOINT_URL`. A scheme without its package installed is refused naming the
package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from kirby_core.errors import ConfigError
from kirby_core.settings import Settings


@dataclass(frozen=True)
class Location:
    """A root directory on some filesystem."""

    fs: fsspec.AbstractFileSystem
    root: str
    """Path inside `fs`, without a trailing slash (for s3: `bucket/prefix`)."""
    url: str
    """As configured (shown in messages and metadata)."""

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        """`root/part/...` inside `fs`."""
        return "/".join((self.root, *parts))

    def uri(self, *parts: str) -> str:
        """`path(*parts)` as people write it: a plain path on a local disk, else a URL."""
        if self.is_local:
            return self.path(*parts)
        return str(self.fs.unstrip_protocol(self.path(*parts)))


def is_url(text: str | Path) -> bool:
    """Whether a location setting is a filesystem URL rather than a local path."""
    return "://" in str(text)


def absolute(text: str | Path) -> str:
    """A location setting that means the same from any working directory."""
    return str(text) if is_url(text) else str(Path(text).expanduser().resolve())


def location(url: str | Path, *, s3_endpoint_url: str | None = None) -> Location:
    """The filesystem and root of a location setting (a path or a filesystem URL)."""
    text = str(url)
    if not is_url(text):
        root = Path(text).expanduser().resolve()
        return Location(LocalFileSystem(), root.as_posix().rstrip("/") or "/", text)
    protocol = text.split("://", 1)[0]
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a") and s3_endpoint_url:
        options["endpoint_url"] = s3_endpoint_url
    try:
        fs, root = fsspec.core.url_to_fs(text, **options)
    except ImportError as exc:
        raise ConfigError(
            f"{text}: the {protocol}:// filesystem needs a package that is not installed ({exc})"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{text}: not a filesystem URL fsspec knows ({exc})") from exc
    return Location(fs, str(root).rstrip("/"), text)


def lake_location(settings: Settings) -> Location:
    """The Parquet lake's root (`KIRBY_LAKE_DIR`)."""
    return location(settings.lake_dir, s3_endpoint_url=settings.s3_endpoint_url)


def backup_location(settings: Settings) -> Location:
    """The backups' root (`KIRBY_BACKUP_URL`)."""
    return location(settings.backup_url, s3_endpoint_url=settings.s3_endpoint_url)

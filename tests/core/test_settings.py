import pytest

from kirby_core.db.urls import DatabaseUrls, plain_url, redact, resolve, sqlalchemy_url
from kirby_core.settings import Settings


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIRBY_DATABASE_URL", "postgresql://u:p@db:5432/kirby")
    monkeypatch.setenv("KIRBY_HYPERLIQUID_REST_URL", "http://127.0.0.1:9999")
    settings = Settings(_env_file=None)
    assert settings.database_url == "postgresql://u:p@db:5432/kirby"
    assert settings.hyperliquid_rest_url == "http://127.0.0.1:9999"


def test_training_falls_back_to_realtime() -> None:
    settings = Settings(_env_file=None, database_url="postgres://u@db/kirby")
    assert resolve(settings) == DatabaseUrls("postgresql://u@db/kirby", "postgresql://u@db/kirby")
    settings = Settings(
        _env_file=None,
        database_url="postgres://u@db/kirby",
        training_database_url="postgresql+asyncpg://u@db/kirby_training",
    )
    assert resolve(settings).training == "postgresql://u@db/kirby_training"


@pytest.mark.parametrize(
    ("url", "plain", "sqlalchemy"),
    [
        ("postgres://u@h/d", "postgresql://u@h/d", "postgresql+psycopg2://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql://u@h/d", "postgresql+psycopg2://u@h/d"),
        (
            "postgresql://postgres:@/kirby?host=/tmp/pg",
            "postgresql://postgres:@/kirby?host=/tmp/pg",
            "postgresql+psycopg2://postgres:@/kirby?host=/tmp/pg",
        ),
    ],
)
def test_driver_spellings(url: str, plain: str, sqlalchemy: str) -> None:
    assert plain_url(url) == plain
    assert sqlalchemy_url(url) == sqlalchemy


def test_redact_hides_password() -> None:
    assert (
        redact("postgresql://kirby:s3cret@db:5432/kirby") == "postgresql://kirby:***@db:5432/kirby"
    )

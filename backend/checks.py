"""Checks of the deployment that `manage.py check`, `migrate` and the server's start run."""

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def _database_errors() -> list[checks.Error]:
    if settings.DEBUG or settings.DATABASE_URL:
        return []
    return [
        checks.Error(
            "DATABASE_URL is required when DEBUG is off, e.g. "
            "postgres://user@127.0.0.1:5432/app (the embedded PostgreSQL is for "
            "development and tests).",
            id="backend.E001",
        )
    ]


@checks.register()
def check_database(app_configs: Any = None, **kwargs: Any) -> list[checks.Error]:
    return _database_errors()


def check_at_start() -> None:
    """Refuse to serve without the database production needs (backend/asgi.py)."""
    for error in _database_errors():
        raise ImproperlyConfigured(error.msg)

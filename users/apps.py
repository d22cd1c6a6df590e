from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def install_rules(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """The rules' SQL functions, as users/sql says, after every migrate (and flush)."""
    from users import sql

    sql.install(connections[using])


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users"

    def ready(self) -> None:
        from users import checks  # noqa: F401 (registers the SMS settings checks)

        post_migrate.connect(install_rules, sender=self)

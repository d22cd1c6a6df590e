"""Django's PostgreSQL backend, on the embedded server (see the package's docstring)."""

from typing import Any

from django.db.backends.postgresql import base

from backend import embedded


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params["host"] = embedded.host_for(self.settings_dict["NAME"] or "postgres")
        return params

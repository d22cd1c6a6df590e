"""The project's PostgreSQL backend (backend/postgresql), on the embedded server."""

from typing import Any

from backend import embedded
from backend.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params["host"] = embedded.host_for(self.settings_dict["NAME"] or "postgres")
        return params
